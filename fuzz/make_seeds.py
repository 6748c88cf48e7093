#!/usr/bin/env python3
"""Write the checked-in seed corpus of the fuzz targets into fuzz/seeds/TARGET/ (fuzz/README.md).

1. references and transport names, WWW-Authenticate headers, registries.conf and auth.json
   texts: written out here;
2. manifests, indexes and configs: copied from the fixture OCI layout (fixtures/oci);
3. layer tars (ustar, GNU long names, PAX records incl. xattrs, whiteouts, hard links,
   devices, truncated ends) with Python's tarfile; the same tars seed tar_split, and their
   tar-split JSON lines, written here in tar-split's format, seed tar_split_read;
4. certs.d: a CA and a client certificate made with the openssl command, when present;
5. GVariant: commit, dirtree and dirmeta objects of an archive-mode repository made with the
   ostree command, when present.
Re-running rewrites the seeds; the fuzzers' own finds go to fuzz/corpus/ (not checked in).
"""
import base64
import glob
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEEDS = os.path.join(HERE, "seeds")


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def references():
    d = "sha256:" + "a" * 64
    refs = [
        "busybox", "docker.io/library/busybox:latest", "quay.io/fedora/fedora-bootc:42",
        "localhost:5000/a/b:tag@" + d, "user/app@" + d, "[::1]:5000/x:1",
        "docker://quay.io/x/y:1", "docker://busybox", "oci:/tmp/layout:basic", "oci:/tmp/layout",
        "oci-archive:/tmp/a.tar:tag", "containers-storage:localhost/bootc",
        "containers-storage:[overlay@/var/lib/containers/storage+/run/containers/storage:overlay.mountopt=nodev]quay.io/x:1",
        "containers-storage:@" + "b" * 64, "containers-storage:" + "c" * 12,
        "ostree:[/ostree/repo]quay.io/x:1", "ostree:[/sysroot/ostree/repo]", "dir:/tmp/x",
        "docker-archive:/tmp/x.tar", "docker://x@@unknown-digest@@",
    ]
    for i, r in enumerate(refs):
        put("reference", f"ref{i:02}", r)


def manifests():
    blobs = os.path.join(ROOT, "fixtures", "oci", "blobs", "sha256")
    n = 0
    for path in sorted(glob.glob(os.path.join(blobs, "*"))):
        data = open(path, "rb").read()
        if len(data) > 8192 or not data.startswith(b"{"):
            continue
        for sel in (0, 1):
            put("manifest", f"blob{n:02}-{sel}", bytes([sel]) + data)
        n += 1
    put("manifest", "index", b"\x00" + open(os.path.join(ROOT, "fixtures", "oci", "index.json"), "rb").read())
    docker_list = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "size": 2, "digest": "sha256:" + "d" * 64,
            "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        }],
    }
    put("manifest", "docker-list", b"\x04" + json.dumps(docker_list).encode())
    put("manifest", "schema1", b"\x00" + b'{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}')


def tars():
    """Tars exercising each header form; returns {name: bytes}."""
    out = {}

    def build(fmt, entries, record_padding=False):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
            for info, data in entries:
                t.addfile(info, io.BytesIO(data) if data is not None else None)
            end = t.offset
        data = buf.getvalue()
        # tarfile pads to a 10 KiB record; most seeds keep only the two end blocks.
        return data if record_padding else data[: end + 1024]

    def f(name, data=b"", **kw):
        i = tarfile.TarInfo(name)
        i.size = len(data)
        i.mtime = 1700000000
        for k, v in kw.items():
            setattr(i, k, v)
        return (i, data)

    def d(name, **kw):
        return f(name, type=tarfile.DIRTYPE, mode=0o755, **kw)

    long = "dir/" + "n" * 150 + "/file"
    out["ustar"] = build(tarfile.USTAR_FORMAT, [
        d("etc/"), f("etc/hosts", b"127.0.0.1 localhost\n"),
        f("etc/link", type=tarfile.SYMTYPE, linkname="hosts"),
        f("etc/hard", type=tarfile.LNKTYPE, linkname="etc/hosts"),
        f("run/fifo", type=tarfile.FIFOTYPE),
    ])
    out["gnu-long"] = build(tarfile.GNU_FORMAT, [
        d("dir/"), f(long, b"long name\n"),
        f("dir/longlink", type=tarfile.SYMTYPE, linkname="/" + "t" * 200),
    ])
    out["pax"] = build(tarfile.PAX_FORMAT, [
        d("./usr/"),
        f("./usr/" + "p" * 120, b"pax path\n",
          pax_headers={"mtime": "1700000000.123456789", "SCHILY.xattr.user.k": "v",
                       "SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}),
        f("usr/bin/caf\u00e9", b"utf8\n", pax_headers={"uid": "4294967296", "gid": "7"}),
    ])
    out["whiteouts"] = build(tarfile.PAX_FORMAT, [
        d("a/"), f("a/.wh..wh..opq"), f("a/.wh.gone"), f("a/kept", b"k"), f(".wh.top"),
    ])
    out["devices"] = build(tarfile.USTAR_FORMAT, [
        f("dev/null", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
        f("dev/sda", type=tarfile.BLKTYPE, devmajor=8, devminor=0),
        f("dev/wh", type=tarfile.CHRTYPE, devmajor=0, devminor=0),
    ])
    out["escape"] = build(tarfile.USTAR_FORMAT, [
        f("a", type=tarfile.SYMTYPE, linkname="/"), f("a/etc/passwd", b"x"),
        f("../up", b"x"), f("/abs/./x/../y", b"y"),
    ])
    out["dup"] = build(tarfile.USTAR_FORMAT, [f("x", b"1"), f("./x", b"2"), d("x/")])
    out["record-padded"] = build(tarfile.USTAR_FORMAT, [f("p", b"padded")], record_padding=True)
    full = out["ustar"]
    out["cut-end"] = full[: len(full) - 1024]      # ends after the last file's padding
    out["one-end-block"] = full[: len(full) - 512]
    out["garbage-after"] = full + b"trailing garbage"
    global_pax = build(tarfile.PAX_FORMAT, [f("g", b"gg")])
    out["global-pax"] = global_pax
    return out


def tarsplit_lines(tar):
    """tar-split JSON lines for a tar: header bytes as segments, bodies as file records."""
    lines = []
    pos = 0

    def seg(b):
        lines.append({"type": 2, "payload": base64.b64encode(b).decode(), "position": len(lines)})

    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as t:
        prev_end = 0
        for m in t.getmembers():
            seg(tar[prev_end:m.offset_data])
            rec = {"type": 1, "name": m.name, "position": len(lines)}
            if m.isreg() and m.size:
                body = tar[m.offset_data:m.offset_data + m.size]
                crc = crc64_iso(body)
                rec["size"] = m.size
                rec["payload"] = base64.b64encode(crc.to_bytes(8, "big")).decode()
                prev_end = m.offset_data + m.size
            else:
                rec["payload"] = None
                prev_end = m.offset_data
            lines.append(rec)
        seg(tar[prev_end:])
    lines.append({"type": 2, "payload": "", "position": len(lines)})
    return "".join(json.dumps(l, separators=(",", ":")) + "\n" for l in lines)


def crc64_iso(data):
    poly = 0xD800000000000000
    crc = 0xFFFFFFFFFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFFFFFFFFFF


def layer_seeds():
    for name, tar in tars().items():
        put("tar_split", name, tar)
        for sel in (0, 1, 2 | 0x40, 0x80):
            put("layer_tar", f"{name}-{sel:02x}", bytes([sel]) + tar)
    for name in ("ustar", "gnu-long", "pax", "whiteouts"):
        put("tar_split_read", name, tarsplit_lines(tars()[name]))
    put("tar_split_read", "name-raw",
        '{"type":1,"name_raw":"/w==","size":1,"payload":"AAAAAAAAAAA=","position":0}\n'
        '{"type":2,"payload":"","position":1}\n')


def registries():
    confs = {
        "v2": 'busybox\nunqualified-search-registries = ["registry.fedoraproject.org", "docker.io"]\n\n'
              '[[registry]]\nprefix = "quay.io/x"\nlocation = "mirror.example/quay-x"\ninsecure = true\n\n'
              '[[registry.mirror]]\nlocation = "m1.example:5000/y"\npull-from-mirror = "digest-only"\n\n'
              '[[registry]]\nlocation = "blocked.example"\nblocked = true\n\n'
              '[[registry]]\nprefix = "*.example.com"\nmirror-by-digest-only = true\n'
              '[[registry.mirror]]\nlocation = "wild.mirror"\n',
        "v1": 'quay.io/x/y:1\n[registries.search]\nregistries = ["docker.io", "quay.io"]\n'
              '[registries.insecure]\nregistries = ["localhost:5000"]\n[registries.block]\nregistries = ["bad.io"]\n',
        "short": 'fedora:40\nunqualified-search-registries = ["docker.io"]\nshort-name-mode = "permissive"\n',
        "digest": 'a.example.com/x@sha256:' + 'e' * 64 + '\n[[registry]]\nprefix = "*.example.com"\n'
                  '[[registry.mirror]]\nlocation = "m.example/mirror"\npull-from-mirror = "tag-only"\n',
    }
    for k, v in confs.items():
        put("registries_conf", k, v)


def auth():
    b = lambda s: base64.b64encode(s.encode()).decode()
    files = {
        "auths": {"auths": {"docker.io": {"auth": b("user:pass")},
                            "quay.io/a": {"auth": b("q:w"), "identitytoken": "tok"},
                            "https://index.docker.io/v1/": {"auth": b("legacy:key")}}},
        "helpers": {"auths": {}, "credHelpers": {"quay.io": "secretservice"}},
        "bad-auth": {"auths": {"localhost:5000": {"auth": "not base64!"}}},
    }
    for i, (k, v) in enumerate(files.items()):
        put("auth_json", k, bytes([2 * (i % 4)]) + json.dumps(v).encode())
    put("auth_json", "dockercfg", b"\x01" + json.dumps({"https://index.docker.io/v1/": {"auth": b("a:b")}}).encode())


def www_authenticate():
    headers = [
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
        'Basic realm="Registry Realm"',
        'Bearer realm="https://r/t",error="insufficient_scope",scope="repository:a:pull,push"',
        'Basic realm="x", Bearer realm="https://r/t", service=r',
        'Bearer realm="a\\"b\\\\c"',
        'user:pa:ss',
        'dXNlcjpwYXNz',
        '{"token":"t","access_token":"a","expires_in":300}',
    ]
    for i, h in enumerate(headers):
        put("www_authenticate", f"h{i}", h)


def certs():
    if not shutil.which("openssl"):
        print("make_seeds: openssl not found, no certs_d seeds")
        return
    with tempfile.TemporaryDirectory() as t:
        run = lambda *a: subprocess.run(a, cwd=t, check=True, capture_output=True)
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650", "-subj", "/CN=fuzz CA")
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "c.key",
            "-out", "c.cert", "-days", "3650", "-subj", "/CN=client")
        ca = open(os.path.join(t, "ca.crt"), "rb").read()
        cert = open(os.path.join(t, "c.cert"), "rb").read()
        key = open(os.path.join(t, "c.key"), "rb").read()
    put("certs_d", "ca", b"\x01" + ca)
    put("certs_d", "client", b"\x06" + cert + b"\0" + key)
    put("certs_d", "all", b"\x0f" + ca + b"\0" + cert + b"\0" + key + b"\0" + ca + cert)
    put("certs_d", "unpaired", b"\x02" + cert)


def gvariant():
    if not shutil.which("ostree"):
        print("make_seeds: ostree not found, no gvariant seeds")
        return
    with tempfile.TemporaryDirectory() as t:
        repo, tree = os.path.join(t, "repo"), os.path.join(t, "tree")
        os.makedirs(os.path.join(tree, "usr/bin"))
        open(os.path.join(tree, "usr/bin/hello"), "w").write("hi\n")
        os.symlink("usr/bin", os.path.join(tree, "bin"))
        subprocess.run(["ostree", "init", "--repo", repo, "--mode=archive"], check=True)
        subprocess.run(["ostree", "commit", "--repo", repo, "--branch", "b", "--subject", "s",
                        "--add-metadata-string=ostree.bootable=true", tree], check=True,
                       capture_output=True)
        sel = {"commit": 0, "dirtree": 1, "dirmeta": 2}
        for path in sorted(glob.glob(os.path.join(repo, "objects/*/*"))):
            ext = path.rsplit(".", 1)[1]
            if ext in sel:
                data = open(path, "rb").read()
                put("gvariant", f"{ext}-{os.path.basename(path)[:8]}", bytes([sel[ext]]) + data)
            elif ext == "filez":
                # The archive header: u32 length, 4 bytes padding, then the variant.
                data = open(path, "rb").read()
                n = int.from_bytes(data[:4], "big")
                put("gvariant", f"filez-{os.path.basename(path)[:8]}", b"\x04" + data[8:8 + n])
    put("gvariant", "typed", b"\x08" + b"(sa{sv}ay)\0" + b"x\0\0\0\0\0\0\0\x01\x02\x03\x02\x05")
    put("gvariant", "maybe", b"\x08" + b"(msmay)\0" + b"ab\0\x00\x01\x02\x03")


if __name__ == "__main__":
    shutil.rmtree(SEEDS, ignore_errors=True)
    references()
    manifests()
    layer_seeds()
    registries()
    auth()
    www_authenticate()
    certs()
    gvariant()
    for t in sorted(os.listdir(SEEDS)):
        print(f"{t}: {len(os.listdir(os.path.join(SEEDS, t)))} seeds")
