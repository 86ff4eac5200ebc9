"""What the client, the gateway and the training side share (distribution tsva-common).

- images:      numpy arrays <-> tsva.v1.Image (RAW, PNG, TIFF), with bounded decoding
- brenner:     the Brenner focus measure that orders each pair (served and simulated alike)
- contract:    the model contract: tensor names, pixel type, layout, size multiple; tile <-> tensor
- metadata:    the ONNX model's metadata_props as one typed record (ModelMetadata), read_onnx_metadata
- credentials: PEM certificate, key-pair and bearer-token checks
- limits:      message size and id length limits both ends of the wire agree on
The generated tsva.v1 stubs ship in this distribution too. No grpcio is needed to import these
modules (tsva.v1.tsva_pb2_grpc itself needs it; the client and the gateway install it).
"""
