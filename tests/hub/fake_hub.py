#!/usr/bin/env python3
"""A stand-in for the Hugging Face hub, for tests/cli/pull.sh (python3
standard library only, 127.0.0.1 only).

Serves model folders in the hub's URL layout, as huggingface_hub sees it:

  HEAD/GET /ORG/NAME/resolve/REV/FILE   (REV: main or the repo's commit)
    small files: 200, ETag "<git blob sha1>", X-Repo-Commit, the bytes
    LFS files (.safetensors, .model): 302 to a second server (the "CDN", on
    another port) with X-Linked-Etag "<sha256>", X-Linked-Size, X-Repo-Commit
    a file that is not there: 404, X-Error-Code: EntryNotFound
  GET /cdn/SHA256/FILE on the CDN port: the bytes, with Range: bytes=N- (206).
    A request that carries an Authorization header is refused (400): a token
    must not follow a redirect to another host or port.

Options:
  --model ORG/NAME=DIR   a repository (repeatable)
  --port-file FILE       written (atomically) with the hub's port once both listen
  --log FILE             one line per request: METHOD PATH range=... auth=yes|no
  --require-token TOK    the hub answers 401 unless "Authorization: Bearer TOK"
  --truncate-after N     the first CDN GET that would send more than N bytes
                         sends N and drops the connection (once)
  --corrupt FILE         serve FILE with a byte flipped, advertising the true sha256
"""
import argparse
import hashlib
import http.server
import os
import sys
import threading
import urllib.parse

LFS_SUFFIXES = (".safetensors", ".model")


class Repo:
    def __init__(self, name, folder):
        self.name = name
        self.folder = folder
        self.files = {}  # name -> (bytes, git sha1, sha256)
        for f in sorted(os.listdir(folder)):
            p = os.path.join(folder, f)
            if os.path.isfile(p):
                data = open(p, "rb").read()
                git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                self.files[f] = (data, git, hashlib.sha256(data).hexdigest())
        h = hashlib.sha1(name.encode())
        for f, (_, git, _) in sorted(self.files.items()):
            h.update(f.encode() + b"\0" + git.encode())
        self.commit = h.hexdigest()


class State:
    repos = {}
    log = None
    log_lock = threading.Lock()
    token = None
    truncate_after = None
    truncated = False
    corrupt = None
    cdn_port = 0
    by_sha = {}  # sha256 -> (file name, bytes)


def log(line):
    if State.log:
        with State.log_lock, open(State.log, "a") as f:
            f.write(line + "\n")


class Base(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def note(self):
        log("%s %s range=%s auth=%s port=%d" % (self.command, self.path, self.headers.get("Range", "-"),
                                                  "yes" if self.headers.get("Authorization") else "no",
                                                  self.server.server_address[1]))

    def reply(self, code, headers=(), body=b"", send_body=True):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)


class Hub(Base):
    def do_HEAD(self):
        self.resolve(False)

    def do_GET(self):
        self.resolve(True)

    def resolve(self, get):
        self.note()
        parts = urllib.parse.unquote(self.path).split("/")
        # ['', ORG, NAME, 'resolve', REV, FILE]
        if len(parts) != 6 or parts[3] != "resolve":
            return self.reply(404, [("X-Error-Code", "EntryNotFound")], b"no such route\n", get)
        name, rev, fname = parts[1] + "/" + parts[2], parts[4], parts[5]
        repo = State.repos.get(name)
        if repo is None:  # the hub does not say whether a private repo exists
            return self.reply(401, [("X-Error-Code", "RepositoryNotFound")], b"Repository not found\n", get)
        if State.token is not None and self.headers.get("Authorization") != "Bearer " + State.token:
            return self.reply(401, [("X-Error-Code", "GatedRepo")], b"Access to this model is restricted\n", get)
        if rev not in ("main", repo.commit):
            return self.reply(404, [("X-Error-Code", "RevisionNotFound")], b"Revision not found\n", get)
        common = [("X-Repo-Commit", repo.commit)]
        if fname not in repo.files:
            return self.reply(404, common + [("X-Error-Code", "EntryNotFound")], b"Entry not found\n", get)
        data, git, sha = repo.files[fname]
        if fname.endswith(LFS_SUFFIXES):
            State.by_sha[sha] = (fname, data)
            loc = "http://127.0.0.1:%d/cdn/%s/%s" % (State.cdn_port, sha, fname)
            return self.reply(302, common + [("ETag", '"%s"' % git), ("X-Linked-Etag", '"%s"' % sha),
                                            ("X-Linked-Size", str(len(data))), ("Location", loc)], b"", get)
        self.reply(200, common + [("ETag", '"%s"' % git)], data, get)


class Cdn(Base):
    def do_HEAD(self):
        self.serve(False)

    def do_GET(self):
        self.serve(True)

    def serve(self, get):
        self.note()
        if self.headers.get("Authorization"):
            log("LEAK: the CDN got an Authorization header")
            return self.reply(400, [], b"a token was sent to the CDN\n", get)
        parts = self.path.split("/")  # ['', 'cdn', SHA, FILE]
        if len(parts) != 4 or parts[2] not in State.by_sha:
            return self.reply(404, [], b"not found\n", get)
        fname, data = State.by_sha[parts[2]]
        if State.corrupt == fname:
            mid = len(data) // 2
            data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
        start, code, extra = 0, 200, []
        rng = self.headers.get("Range")
        if rng:
            if not (rng.startswith("bytes=") and rng.endswith("-") and rng[6:-1].isdigit()):
                return self.reply(400, [], b"unsupported range\n", get)
            start = int(rng[6:-1])
            if start >= len(data):
                return self.reply(416, [("Content-Range", "bytes */%d" % len(data))], b"", get)
            code = 206
            extra = [("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))]
        body = data[start:]
        if (get and State.truncate_after is not None and not State.truncated
                and len(body) > State.truncate_after):
            State.truncated = True
            log("TRUNCATE %s after %d bytes" % (fname, State.truncate_after))
            self.send_response(code)
            for k, v in extra:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:State.truncate_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.reply(code, extra + [("Accept-Ranges", "bytes")], body, get)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log")
    ap.add_argument("--require-token")
    ap.add_argument("--truncate-after", type=int)
    ap.add_argument("--corrupt")
    a = ap.parse_args()
    for m in a.model:
        name, folder = m.split("=", 1)
        State.repos[name] = Repo(name, folder)
    State.log = a.log
    State.token = a.require_token
    State.truncate_after = a.truncate_after
    State.corrupt = a.corrupt
    hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    cdn = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Cdn)
    hub.daemon_threads = cdn.daemon_threads = True
    State.cdn_port = cdn.server_address[1]
    threading.Thread(target=cdn.serve_forever, daemon=True).start()
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % hub.server_address[1])
    os.rename(tmp, a.port_file)
    try:
        hub.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
