"""The committed gRPC stubs are what `make protos` generates from protos/artsearch/v1."""

from artsearch_tools import protogen


def test_committed_stubs_are_fresh():
    stale = protogen.stale_stubs()
    assert not stale, f"stale generated stubs {stale}: run `make protos` and commit the result"


def test_every_proto_has_stubs():
    names = {p.stem for p in protogen.proto_files()}
    assert {"common", "encoder", "search", "influence"} <= names
    for name in names:
        assert (protogen.STUB_DIR / f"{name}_pb2.py").is_file()
        assert (protogen.STUB_DIR / f"{name}_pb2_grpc.py").is_file()
