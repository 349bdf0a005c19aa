#!/usr/bin/env python3
"""Drives the real huggingface_hub client against `mrepo serve` (run by Tests/CLITests/ServeHubTests.swift).

Input: a JSON file (argv[1]) naming the endpoint, the repository, the tokens, the revisions to download with
the folders `mrepo export` wrote for them, and a folder to upload. Output: one JSON object on stdout with
what the write side created, for the Swift test to check with `mrepo log` and `mrepo export`.
Every failed expectation raises, so the exit status says whether all held. Only 127.0.0.1 is contacted.
"""
import atexit
import http.client
import io
import json
import os
import shutil
import sys
import tempfile
import urllib.parse

cfg = json.load(open(sys.argv[1]))
os.environ["HF_ENDPOINT"] = cfg["endpoint"]
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
# Every folder the client writes lives under one scratch folder, removed however the script ends.
scratch = tempfile.mkdtemp(prefix="mrepo-hf-")
atexit.register(shutil.rmtree, scratch, True)
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="home-", dir=scratch)

from huggingface_hub import HfApi, get_safetensors_metadata, hf_hub_download, snapshot_download  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError  # noqa: E402
from huggingface_hub.file_download import hf_hub_url, http_get  # noqa: E402

endpoint = cfg["endpoint"]
repo_id = cfg["repo"]
read_token = cfg["read_token"]
write_token = cfg["write_token"]
host, port = urllib.parse.urlsplit(endpoint).netloc.split(":")
assert host == "127.0.0.1", "only loopback"


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def files_of(folder):
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d not in (".cache", ".mrepo")]
        for name in filenames:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, folder)] = open(full, "rb").read()
    return out


def raw(method, path, body=None, headers=None):
    """A request with the path sent exactly as given (no client-side normalisation)."""
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


# 1. snapshot_download of a branch, a tag and a commit: byte-equal to `mrepo export`.
for case in cfg["downloads"]:
    folder = snapshot_download(repo_id, revision=case["revision"], cache_dir=tempfile.mkdtemp(prefix="cache-", dir=scratch),
                               token=read_token)
    got, want = files_of(folder), files_of(case["export"])
    check(sorted(got) == sorted(want), f"{case['revision']}: files {sorted(got)} != {sorted(want)}")
    for name in want:
        check(got[name] == want[name], f"{case['revision']}: {name} differs from mrepo export")

# 2. hf_hub_download of one file by commit, a resumed download (the client's own resume path, which
#    sends Range: bytes=N-), ranged reads (get_safetensors_metadata reads the header by range).
rev = cfg["downloads"][-1]["revision"]
weights = cfg["weights"]
want = open(os.path.join(cfg["downloads"][-1]["export"], weights), "rb").read()
path = hf_hub_download(repo_id, weights, revision=rev, cache_dir=tempfile.mkdtemp(prefix="cache-", dir=scratch), token=read_token)
check(open(path, "rb").read() == want, "hf_hub_download differs from mrepo export")
url = hf_hub_url(repo_id, weights, revision=rev)
half = len(want) // 2
resumed = io.BytesIO()
resumed.write(want[:half])
http_get(url, resumed, resume_size=half, headers={"authorization": f"Bearer {read_token}"}, expected_size=len(want))
check(resumed.getvalue() == want, "resumed download differs")
# A placeholder prefix must survive: proof that the server answered the range (206), not the whole file.
marked = io.BytesIO()
marked.write(b"\0" * half)
http_get(url, marked, resume_size=half, headers={"authorization": f"Bearer {read_token}"}, expected_size=len(want))
check(marked.getvalue() == b"\0" * half + want[half:], "the resume did not use a range")
meta = get_safetensors_metadata(repo_id, revision=rev, token=read_token)
check(len(meta.files_metadata[weights].tensors) > 0, "get_safetensors_metadata found no tensors")
auth = {"Authorization": f"Bearer {read_token}"}
status, headers, body = raw("GET", f"/{repo_id}/resolve/{rev}/{weights}", headers={**auth, "Range": "bytes=100-4195000"})
check(status == 206 and body == want[100:4195001], f"range across a chunk boundary: {status}")
check(headers.get("Content-Range") == f"bytes 100-4195000/{len(want)}" or len(want) <= 4195000, "Content-Range")
status, headers, _ = raw("HEAD", f"/{repo_id}/resolve/{rev}/{weights}", headers=auth)
check(status == 200 and len(headers.get("X-Repo-Commit", "")) == 40, "HEAD needs X-Repo-Commit (40 hex)")
check(headers.get("Content-Length") == str(len(want)) and headers.get("Accept-Ranges") == "bytes", "HEAD headers")
import hashlib  # noqa: E402
check(headers.get("ETag", "").strip('"') == hashlib.sha256(want).hexdigest(), "ETag is the file's SHA-256")
status, headers, _ = raw("GET", f"/{repo_id}/resolve/{rev}/no-such-file.json", headers=auth)
check(status == 404 and headers.get("X-Error-Code") == "EntryNotFound" and headers.get("X-Repo-Commit"), "EntryNotFound")
status, headers, _ = raw("GET", f"/{repo_id}/resolve/no-such-branch/config.json", headers=auth)
check(status == 404 and headers.get("X-Error-Code") == "RevisionNotFound", "RevisionNotFound")
status, headers, _ = raw("GET", "/nobody/nothing/resolve/main/config.json", headers=auth)
check(status == 404 and headers.get("X-Error-Code") == "RepoNotFound", "RepoNotFound")

# 3. Paths and revisions that try to leave the root, encoded or not, are refused.
for bad in [f"/{repo_id}/resolve/main/../../../etc/passwd", f"/{repo_id}/resolve/main/%2E%2E/%2e%2e/etc/passwd",
            f"/{repo_id}/resolve/main/a%2F..%2F..%2Fetc%2Fpasswd", f"/{repo_id}/resolve/..%2F..%2Fmain/config.json",
            "/../../etc/resolve/main/passwd", "/%2E%2E/etc/resolve/main/passwd", f"/api/models/{repo_id}/tree/main/..",
            "/api/models/..%2F..%2F..%2Fetc/passwd/revision/main"]:
    status, _, _ = raw("GET", bad, headers=auth)
    check(status in (400, 404), f"{bad}: status {status}")

# 4. Refusals: a bad token (401 with the Hub's message), a read token, an oversized body, LFS content that
#    does not match its oid. None may change anything (the Swift test checks the refs afterwards).
bad_api = HfApi(endpoint=endpoint, token="not-a-valid-token")
try:
    bad_api.create_branch(repo_id, branch="refused-bad-token")
    raise AssertionError("a bad token created a branch")
except HfHubHTTPError as e:
    check(e.response.status_code == 401, f"bad token: {e.response.status_code}")
    check(e.response.headers.get("X-Error-Message") == "Invalid credentials in Authorization header", "401 message")
status, _, _ = raw("GET", f"/api/models/{repo_id}", headers={"Authorization": "Bearer not-a-valid-token"})
check(status == 401, "a bad token may not read")
read_api = HfApi(endpoint=endpoint, token=read_token)
try:
    read_api.create_branch(repo_id, branch="refused-read-token")
    raise AssertionError("a read token created a branch")
except HfHubHTTPError as e:
    check(e.response.status_code == 403, f"read token: {e.response.status_code}")
write_auth = {"Authorization": f"Bearer {write_token}", "Content-Type": "application/json"}
status, _, _ = raw("POST", f"/api/models/{repo_id}/preupload/main", body=b" " * (9 << 20), headers=write_auth)
check(status == 413, f"oversized body: {status}")
content = b"not what the oid says"
fake_oid = hashlib.sha256(b"something else").hexdigest()
status, _, batch = raw("POST", f"/{repo_id}.git/info/lfs/objects/batch", headers=write_auth,
                       body=json.dumps({"operation": "upload", "transfers": ["basic"],
                                        "objects": [{"oid": fake_oid, "size": len(content)}]}).encode())
check(status == 200, f"batch: {status}")
href = json.loads(batch)["objects"][0]["actions"]["upload"]["href"]
status, _, _ = raw("PUT", urllib.parse.urlsplit(href).path + "?" + urllib.parse.urlsplit(href).query, body=content)
check(status == 400, f"mismatching LFS content: {status}")
status, _, _ = raw("POST", f"/{repo_id}.git/info/lfs/objects/verify", headers=write_auth,
                   body=json.dumps({"oid": fake_oid, "size": len(content)}).encode())
check(status == 404, f"verify after a rejected upload: {status}")
status, _, _ = raw("PUT", f"/{repo_id}.git/info/lfs/objects/upload/{fake_oid}/{len(content)}?ticket=guess", body=content)
check(status == 403, f"upload without a ticket: {status}")

# 5. The write side: create_branch, create_tag, upload_folder (preupload, LFS batch, upload, verify, commit).
api = HfApi(endpoint=endpoint, token=write_token)
api.create_branch(repo_id, branch="hub-branch", revision=cfg["downloads"][0]["revision"])
api.create_tag(repo_id, tag="hub-tag", revision="hub-branch", tag_message="tagged over the Hub API")
refs = api.list_repo_refs(repo_id)
check("hub-branch" in [b.name for b in refs.branches] and "hub-tag" in [t.name for t in refs.tags], "refs listed")
info = api.upload_folder(folder_path=cfg["upload"], repo_id=repo_id, revision="hub-branch", commit_message="upload over the Hub API")
check(len(info.oid) == 40, "commit ids are 40 hex digits")
# Uploading the same folder again is a no-op the client detects from the preupload oids.
again = api.upload_folder(folder_path=cfg["upload"], repo_id=repo_id, revision="hub-branch", commit_message="nothing new")
check(again.oid == info.oid, "an unchanged upload made a new commit")
# A new repository, its first commit on the unborn main branch.
new_repo = repo_id.split("/")[0] + "/created-over-hub"
url = api.create_repo(new_repo, exist_ok=True)
check(str(url).startswith(endpoint), f"create_repo url {url}")
api.create_repo(new_repo, exist_ok=True)
created = api.upload_folder(folder_path=cfg["upload"], repo_id=new_repo, commit_message="first commit")
downloaded = snapshot_download(new_repo, cache_dir=tempfile.mkdtemp(prefix="cache-", dir=scratch), token=read_token)
check(files_of(downloaded) == files_of(cfg["upload"]), "the new repository holds the uploaded folder")

print(json.dumps({"upload_commit": info.oid, "created_commit": created.oid, "created_repo": new_repo}))
