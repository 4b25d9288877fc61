"""The Debian package (scripts/package): built from a release build, its contents and control
data, then installed with dpkg -i, the unit checked with systemd-analyze verify, the installed
binary run as the service would run it (user imgsearch, the unit's command line and
/etc/default/imgsearch, the model and web UI from /usr/share/imgsearch) against a temporary data
directory, upgraded over itself, removed and purged, with nothing of it left.

Environment: IMGSEARCH_PACKAGE_BUILD, the release CMake build directory to package (default
build/). Installing needs root: the lifecycle test is skipped otherwise. The package is always
purged at the end, whatever failed."""
import grp
import hashlib
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import requests

from paths import DARKNET, ROOT, SKIMAGE
from server import free_port

UNIT = "/lib/systemd/system/imgsearch.service"
DEFAULTS = "/etc/default/imgsearch"
STATE = "/var/lib/imgsearch"
WANTS = "/etc/systemd/system/multi-user.target.wants/imgsearch.service"


def run(*cmd, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check:
        assert p.returncode == 0, f"{' '.join(cmd)} exited with {p.returncode}:\n{p.stdout}{p.stderr}"
    return p


def installed():
    p = run("dpkg-query", "-W", "-f=${Status}", "imgsearch", check=False)
    return p.returncode == 0 and p.stdout.strip() != "unknown ok not-installed"


def user_exists(name="imgsearch"):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name="imgsearch"):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="module")
def deb():
    build = os.environ.get("IMGSEARCH_PACKAGE_BUILD", os.path.join(ROOT, "build"))
    p = run(os.path.join(ROOT, "scripts", "package"), "--build", build, cwd=ROOT, timeout=600)
    path = os.path.join(ROOT, p.stdout.strip().splitlines()[-1])
    version = run(os.path.join(build, "imgsearch"), "--version").stdout.split()[1]
    assert os.path.basename(path) == f"imgsearch_{version}_{run('dpkg', '--print-architecture').stdout.strip()}.deb"
    return path, version


def test_contents(deb, tmp_path):
    path, version = deb
    field = lambda name: run("dpkg-deb", "-f", path, name).stdout.strip()  # noqa: E731
    assert field("Package") == "imgsearch" and field("Version") == version
    depends = [d.split()[0] for d in field("Depends").split(", ")]
    for lib in ("libc6", "libvips42", "libxnnpack0", "libdnnl2", "libmicrohttpd12", "libsqlite3-0", "libpq5",
                "libjansson4", "libssl3", "adduser"):
        assert lib in depends, f"{lib} missing from Depends: {depends}"
    assert not [d for d in depends if d.endswith("-dev")]
    run("dpkg-deb", "-R", path, str(tmp_path / "x"))
    root = tmp_path / "x"
    assert (root / "DEBIAN" / "conffiles").read_text().split() == [DEFAULTS]
    for script in ("postinst", "prerm", "postrm"):
        assert os.access(root / "DEBIAN" / script, os.X_OK)
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.is_symlink()} - {
        f"DEBIAN/{n}" for n in ("control", "conffiles", "md5sums", "postinst", "prerm", "postrm")}
    for f in ("usr/bin/imgsearch", "usr/share/imgsearch/web/index.html", "usr/share/imgsearch/web/openapi.json",
              "usr/share/imgsearch/models/efficientnet_lite0.json",
              "usr/share/imgsearch/models/efficientnet_lite0.safetensors",
              "usr/share/imgsearch/models/efficientnet_lite0.head.json",
              "usr/share/imgsearch/models/efficientnet_lite0.head.safetensors",
              "usr/share/man/man1/imgsearch.1.gz", "usr/share/doc/imgsearch/copyright",
              "usr/share/doc/imgsearch/changelog.Debian.gz", "lib/systemd/system/imgsearch.service",
              "etc/default/imgsearch"):
        assert f in files, f"{f} is not in the package"
    # only the default model, no fetch cache, nothing of the build tree
    assert not [f for f in files if "lite1" in f or "lite2" in f or ".cache" in f or ".whl" in f]
    assert not [p for p in root.rglob("*") if p.is_symlink()]
    # md5sums lists every file with its digest
    sums = dict(reversed(line.split(None, 1)) for line in (root / "DEBIAN" / "md5sums").read_text().splitlines())
    assert set(sums) == files
    for f, digest in sums.items():
        assert hashlib.md5((root / f).read_bytes()).hexdigest() == digest, f
    # the packaged model is the one in models/ (with the head the tests run with)
    for f in ("efficientnet_lite0.json", "efficientnet_lite0.head.safetensors"):
        assert (root / "usr/share/imgsearch/models" / f).read_bytes() == open(os.path.join(ROOT, "models", f), "rb").read()


def service_command(opts_extra):
    """The unit's ExecStart with $IMGSEARCH_OPTS as /etc/default/imgsearch sets it, then opts_extra
    (a later option wins), and the environment the unit gives the server."""
    execstart = next(line.split("=", 1)[1] for line in open(UNIT) if line.startswith("ExecStart="))
    # EnvironmentFile= syntax is a subset of the shell's: let sh read it
    env_text = run("sh", "-c", f"set -a; . {DEFAULTS}; env -0", env={"PATH": "/usr/bin:/bin"}).stdout
    env = dict(kv.split("=", 1) for kv in env_text.split("\0") if "=" in kv)
    argv = []
    for word in shlex.split(execstart):
        argv += env.get("IMGSEARCH_OPTS", "").split() if word == "$IMGSEARCH_OPTS" else [word]
    return argv + opts_extra, {"PATH": "/usr/bin:/bin", **{k: v for k, v in env.items() if k.startswith("IMGSEARCH_")}}


@pytest.mark.skipif(os.geteuid() != 0, reason="installing a Debian package needs root")
def test_install_run_upgrade_remove_purge(deb):
    path, version = deb
    assert not installed(), "imgsearch is installed on this machine already: remove it (dpkg -P imgsearch) first"
    assert not user_exists(), "a user imgsearch exists already: the purge would delete it"
    paths = [os.path.normpath("/" + line.split(None, 5)[5].split(" -> ")[0])
             for line in run("dpkg-deb", "-c", path).stdout.splitlines()]
    existed = {p for p in paths if os.path.lexists(p)}  # /usr, /etc/default, ...
    data = tempfile.mkdtemp(prefix="imgsearch-package-test-")
    proc = None
    try:
        run("dpkg", "-i", path)
        assert run("dpkg-query", "-W", "-f=${Status} ${Version}", "imgsearch").stdout == f"install ok installed {version}"
        assert run("/usr/bin/imgsearch", "--version").stdout.strip() == f"imgsearch {version}"

        # postinst: a system user without a login, owning the state directory; the unit enabled
        user = pwd.getpwnam("imgsearch")
        assert user.pw_uid < 1000 and user.pw_dir == STATE and user.pw_shell.endswith("nologin")
        assert grp.getgrgid(user.pw_gid).gr_name == "imgsearch"
        st = os.stat(STATE)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (user.pw_uid, user.pw_gid, 0o750)
        assert os.readlink(WANTS) == UNIT

        # the unit as systemd reads it
        if shutil.which("systemd-analyze") is None:
            pytest.fail("systemd-analyze is missing (Debian's systemd, deps/apt-test.txt)")
        p = run("systemd-analyze", "verify", UNIT, check=False)
        assert p.returncode == 0 and "imgsearch" not in p.stdout + p.stderr, p.stdout + p.stderr
        for setting in ("User=imgsearch", "StateDirectory=imgsearch", f"EnvironmentFile=-{DEFAULTS}",
                        "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                        f"ReadWritePaths={STATE}", "Restart=on-failure", "TimeoutStopSec=40"):
            assert setting in open(UNIT).read().split("\n"), setting

        # the installed binary as the unit runs it: the imgsearch user, its command line and settings,
        # working directory /var/lib/imgsearch (no models/ or web/ there: they come from /usr/share)
        os.chown(data, user.pw_uid, user.pw_gid)
        port = free_port()
        argv, env = service_command(["--data", data, "--port", str(port)])
        assert argv[:4] == ["/usr/bin/imgsearch", "serve", "--data", STATE]
        assert "--host" in argv and argv[argv.index("--host") + 1] == "127.0.0.1"  # as installed: this machine only
        # setpriv execs the server itself (runuser would stay between it and the SIGTERM below)
        log = open(data + ".log", "wb")
        proc = subprocess.Popen(["setpriv", "--reuid=imgsearch", "--regid=imgsearch", "--clear-groups",
                                 "--no-new-privs", "--", *argv], cwd=STATE, env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"the installed server exited with {proc.returncode}: {open(data + '.log').read()}"
            try:
                requests.get(url + "/index/health", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the installed server did not answer within 60 s"
                time.sleep(0.1)
        status = requests.get(url + "/index/status").json()["result"]
        assert status["embedding"].startswith("efficientnet_lite0+"), status  # the packaged model with its head
        assert status["dims"] == json.load(open("/usr/share/imgsearch/models/efficientnet_lite0.head.json"))["dims"]
        ids = {}
        for name, f in (("dog", os.path.join(DARKNET, "dog.jpg")), ("cat", os.path.join(SKIMAGE, "chelsea.png"))):
            with open(f, "rb") as fh:
                r = requests.post(url + "/image/add", files={"image": fh}, data={"data": json.dumps({"animal": name})})
            assert r.status_code == 201, r.text
            ids[name] = r.json()["result"]
        with open(os.path.join(DARKNET, "dog.jpg"), "rb") as fh:
            r = requests.post(url + "/image/search?k=2", files={"image": fh})
        hits = r.json()["result"]
        assert [h["id"] for h in hits] == [ids["dog"], ids["cat"]] and hits[0]["dist"] < 0.01, hits
        ui = requests.get(url + "/")
        assert ui.status_code == 200 and ui.content == open("/usr/share/imgsearch/web/index.html", "rb").read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=45) == 0, open(data + ".log").read()
        proc = None
        log.close()
        stored = [os.path.join(d, f) for d, _, fs in os.walk(data) for f in fs]
        assert stored and all(os.stat(f).st_uid == user.pw_uid for f in stored)

        # the command line finds the packaged model too
        p = run("setpriv", "--reuid=imgsearch", "--regid=imgsearch", "--clear-groups", "--",
                "/usr/bin/imgsearch", "classify", os.path.join(DARKNET, "dog.jpg"), cwd=STATE, env={"PATH": "/usr/bin:/bin"})
        labels = [t["label"] for t in json.loads(p.stdout)["top"]]
        assert "malamute" in labels, labels

        # an upgrade over itself keeps a changed conffile and the user
        with open(DEFAULTS, "a") as f:
            f.write("# changed by the test\n")
        run("dpkg", "-i", path)
        assert open(DEFAULTS).read().endswith("# changed by the test\n")
        assert pwd.getpwnam("imgsearch").pw_uid == user.pw_uid

        # remove: the files go; the settings, the data and the user stay
        run("dpkg", "-r", "imgsearch")
        assert run("dpkg-query", "-W", "-f=${Status}", "imgsearch").stdout == "deinstall ok config-files"
        left = [p for p in paths if p not in existed and p != DEFAULTS and os.path.lexists(p) and not os.path.isdir(p)]
        assert not left, f"dpkg -r left {left}"
        assert not os.path.exists("/usr/share/imgsearch")
        assert os.path.exists(DEFAULTS) and os.path.isdir(STATE) and user_exists()

        # purge: nothing of it is left
        run("dpkg", "-P", "imgsearch")
        assert not installed()
        left = [p for p in paths + [STATE, WANTS] if p not in existed and os.path.lexists(p)]
        assert not left, f"dpkg -P left {left}"
        helper = "/var/lib/systemd/deb-systemd-helper-enabled"
        assert not [os.path.join(d, f) for d, _, fs in os.walk(helper) for f in fs if "imgsearch" in f]
        assert not user_exists() and not group_exists()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if installed():
            subprocess.run(["dpkg", "-P", "imgsearch"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
        if os.path.exists(data + ".log"):
            os.unlink(data + ".log")
