"""Storage grants and the per-job identity the operator makes for a worker pod."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from ffmpeg_operator import identity
from ffmpeg_operator.grants import Signer, Write, job_grants, presign_grants
from ffmpegjob_model.grants import GRANTS_FILE, Grants
from ffmpegjob_model.model import FFmpegJobSpec
from ffmpegjob_model.s3client import s3_client
from ffmpegjob_model.settings import S3Settings

S3 = S3Settings.model_validate({
    "endpoint_url": "http://minio.store:9000", "public_endpoint_url": "https://s3.example.com", "bucket": "media",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t"})


class LocalSigner(Signer):
    """Presigns for real (SigV4 is local computation); initiating an upload is the one request
    to storage, answered here."""

    def __init__(self) -> None:
        super().__init__(S3, s3_client(S3))
        self.initiated: list[str] = []

    def multipart(self, key: str, parts: int, expires: int, content_type: str | None = None) -> Any:
        real = self.client.create_multipart_upload
        self.client.create_multipart_upload = lambda **kw: {"UploadId": f"up-{len(self.initiated)}"}
        try:
            self.initiated.append(key)
            return super().multipart(key, parts, expires, content_type)
        finally:
            self.client.create_multipart_upload = real


def q(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def spec(**kw: Any) -> FFmpegJobSpec:
    return FFmpegJobSpec.model_validate({
        "tenant": "acme",
        "inputs": [{"name": "a", "source": "dir_in/a.mp4"}, {"name": "web", "source": "https://example.com/b.mp4"}],
        "outputs": [{"name": "out.mp4"}, {"name": "thumb.jpg"}],
        "commands": ["-i {{a}} -i {{web}} {{out.mp4}} -frames:v 1 {{thumb.jpg}}"],
        "output": {"dirId": "dir_out"}, **kw})


def test_job_grants_read_inputs_write_declared_outputs_and_nothing_else() -> None:
    signer = LocalSigner()
    g = job_grants(signer, spec(), S3, expires=3600, parts=4)
    assert set(g.inputs) == {"a"}  # a public URL input needs no grant
    read = g.inputs["a"]
    assert read.key == "files/acme/dir_in/a.mp4" and read.put_url is None and read.delete_url is None
    assert urlsplit(read.get_url or "").path == "/media/files/acme/dir_in/a.mp4"
    assert urlsplit(read.get_url or "").netloc == "minio.store:9000"  # signed for where pods reach it
    assert q(read.get_url or "")["X-Amz-Expires"] == ["3600"]
    assert set(g.outputs) == {"out.mp4", "thumb.jpg"}
    out = g.outputs["out.mp4"]
    assert out.key == "files/acme/dir_out/out.mp4" and out.get_url is None
    assert out.content_type == "video/mp4" and "content-type" in q(out.put_url or "")["X-Amz-SignedHeaders"][0]
    assert out.multipart is not None and len(out.multipart.part_urls) == 4
    assert [q(u)["partNumber"] for u in out.multipart.part_urls] == [["1"], ["2"], ["3"], ["4"]]
    assert all(q(u)["uploadId"] == [out.multipart.upload_id] for u in out.multipart.part_urls)
    assert q(out.multipart.complete_url)["uploadId"] == [out.multipart.upload_id]
    assert signer.initiated == ["files/acme/dir_out/out.mp4", "files/acme/dir_out/thumb.jpg"]
    text = g.dump()
    assert "s3cr3t" not in text and "Credential=AKIAEXAMPLE%2F" in text  # the key id is public, the secret never
    assert Grants.model_validate_json(text) == g


def test_another_tenants_object_gets_no_grant() -> None:
    other = f"{S3.endpoint_url}/media/files/rival/dir_x/secret.mp4?X-Amz-Signature=abc"
    mine = f"{S3.public_endpoint_url}/media/files/acme/dir_x/mine.mp4?X-Amz-Signature=abc"
    g = job_grants(LocalSigner(), spec(inputs=[{"name": "a", "source": other}, {"name": "b", "source": mine}],
                                       commands=["-i {{a}} -i {{b}} {{out.mp4}} {{thumb.jpg}}"]), S3, 600, 0)
    assert set(g.inputs) == {"b"} and g.inputs["b"].key == "files/acme/dir_x/mine.mp4"
    assert all(o.multipart is None for o in g.outputs.values())  # parts=0: single PUTs


def test_presign_grants_is_generic_for_scratch_objects() -> None:
    signer = LocalSigner()
    ckpt, seg0, seg1 = "scratch/acme/u1/step-1.mkv", "scratch/acme/u1/seg-0.ts", "scratch/acme/u1/seg-1.ts"
    got = presign_grants(signer, {"ckpt": ckpt, "seg-0": seg0}, {"ckpt": ckpt, "seg-1": Write(seg1, delete=False)},
                         expires=10**9)
    assert got["ckpt"].get_url and got["ckpt"].put_url  # read and write the same key
    assert got["seg-0"].put_url is None
    assert got["seg-1"].get_url is None and got["seg-1"].delete_url is None
    assert q(got["seg-1"].put_url or "")["X-Amz-Expires"] == [str(7 * 24 * 3600)]  # SigV4's cap
    with pytest.raises(ValueError, match="two keys"):
        presign_grants(signer, {"x": "k1"}, {"x": "k2"}, 60)
    policy = signer.post_policy("scratch/acme/u1/", 600, max_bytes=1024)
    assert policy.prefix == "scratch/acme/u1/" and "policy" in policy.fields and "key" not in policy.fields


def test_identity_names_only_its_own_ffmpegjob() -> None:
    owner = {"apiVersion": "kubeffmpeg.io/v1alpha1", "kind": "FFmpegJob", "name": "clip", "uid": "u1",
             "controller": True, "blockOwnerDeletion": True}
    g = job_grants(LocalSigner(), spec(), S3, 600, 0)
    objs = identity.manifests("ffj-u1", "clip", "ffmpeg", {"a": "b"}, owner, g)
    assert list(objs) == ["ServiceAccount", "Role", "RoleBinding", "Secret"]  # creation order
    for o in objs.values():
        assert o["metadata"]["ownerReferences"] == [owner] and o["metadata"]["namespace"] == "ffmpeg"
    assert objs["Role"]["rules"] == [
        {"apiGroups": ["kubeffmpeg.io"], "resources": ["ffmpegjobs"], "resourceNames": ["clip"], "verbs": ["get"]},
        {"apiGroups": ["kubeffmpeg.io"], "resources": ["ffmpegjobs/status"], "resourceNames": ["clip"],
         "verbs": ["get", "patch"]},
    ]
    assert objs["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": "ffj-u1", "namespace": "ffmpeg"}]
    assert objs["RoleBinding"]["roleRef"]["name"] == "ffj-u1"
    secret = objs["Secret"]
    assert secret["metadata"]["name"] == "ffj-u1-grants" and secret["immutable"] is True
    assert Grants.model_validate_json(secret["stringData"][GRANTS_FILE]) == g


@pytest.mark.parametrize(("op", "method", "params", "extra"), [
    ("get_object", "GET", {}, {}),
    ("put_object", "PUT", {}, {"ContentType": "video/mp4"}),
    ("delete_object", "DELETE", {}, {}),
    ("upload_part", "PUT", {"partNumber": "3", "uploadId": "a/b+c="}, {"PartNumber": 3, "UploadId": "a/b+c="}),
    ("complete_multipart_upload", "POST", {"uploadId": "u"}, {"UploadId": "u"}),
])
def test_own_sigv4_signs_exactly_as_boto3(op: str, method: str, params: dict[str, str], extra: dict[str, Any]) -> None:
    """The operator presigns with its own SigV4 (dozens of URLs a job); boto3 is the reference."""
    signer = LocalSigner()
    key = "files/acme/dir x/ünï côdé+(1).mp4"
    ref = signer.client.generate_presigned_url(op, Params={"Bucket": "media", "Key": key, **extra}, ExpiresIn=900)
    when = datetime.strptime(q(ref)["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    ours = signer.sigv4.presign(method, "media", key, 900, params, content_type=extra.get("ContentType"), now=when)
    assert urlsplit(ours).path == urlsplit(ref).path
    assert q(ours) == q(ref)


def test_a_chain_gets_get_and_put_of_each_checkpoint_object_and_no_delete() -> None:
    chain = spec(commands=["-i {{a}} {{out.mp4}}", "-i {{out.mp4}} -frames:v 1 {{thumb.jpg}}",
                           "-i {{out.mp4}} {{out.mp4}}"])
    signer = LocalSigner()
    g = job_grants(signer, chain, S3, 600, 4, job_uid="u1")
    assert set(g.scratch) == {f"steps/{n:03d}/{f}" for n in (1, 2) for f in ("out.mp4", "thumb.jpg", "done.json")}
    for name, grant in g.scratch.items():
        assert grant.key == f"scratch/acme/u1/{name}"
        assert urlsplit(grant.get_url or "").path == urlsplit(grant.put_url or "").path == f"/media/{grant.key}"
        assert grant.delete_url is None and grant.multipart is None  # the operator deletes scratch
    assert g.scratch["steps/001/done.json"].content_type == "application/json"
    assert signer.initiated == ["files/acme/dir_out/out.mp4", "files/acme/dir_out/thumb.jpg"]  # outputs only
    assert job_grants(signer, spec(), S3, 600, 0, job_uid="u1").scratch == {}  # one command: no checkpoints
    many = spec(outputs=[{"name": f"o{i}.mp4"} for i in range(60)],
                commands=[" ".join(f"{{{{o{i}.mp4}}}}" for i in range(60))] * 30)
    steps = {n.split("/")[1] for n in job_grants(signer, many, S3, 600, 0, job_uid="u1").scratch}
    assert steps == {"001", "002", "003", "004"}  # bounded: 256 objects of 61 per step
