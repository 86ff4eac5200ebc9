"""Limits both ends of the wire agree on."""

# Two 4096 x 4096 x 3 uint16 shots are ~201 MB; gRPC's default limit is 4 MiB. 256 MiB leaves room
# for both shots of the largest tile the API documents, on client and gateway alike.
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
MAX_ID_BYTES = 256  # tile_id, slide_id: longer ones are refused
