"""The README's curl examples, run exactly as written against a server on the README's port."""
import json
import os
import re
import subprocess

import pytest

from server import Server
from paths import ROOT


def readme_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.startswith("curl ")]


@pytest.fixture
def readme_server(binary, model, tmp_path):
    s = Server(binary, model, tmp_path / "data")
    s.port, s.url = 8001, "http://localhost:8001"  # as the README says
    s.start()
    yield s
    assert s.stop() == 0


def test_readme_examples(readme_server, tmp_path):
    cmds = readme_commands()
    assert len(cmds) >= 10
    out = []
    for cmd in cmds:
        p = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, (cmd, p.stderr)
        out.append(json.loads(p.stdout) if p.stdout.strip() else None)
    by = dict(zip(cmds, out))
    results = [o["result"] if isinstance(o, dict) and "result" in o else o for o in out]
    assert "detail" not in json.dumps([o for o in out if o]), out
    assert results[0] == 1 and results[1] == 2                       # two adds
    assert [h["id"] for h in results[2]] == [1, 2]                    # the dog photo is nearest the dog
    assert [h["id"] for h in results[3]] == [1]                       # the filter keeps only malamutes
    assert results[4]["data"]["owner"]["city"] == "Oslo"              # data of image 1
    assert results[5] == 1                                            # metadata replaced
    assert [r["id"] for r in results[6]] == [1]                       # query age >= 3
    assert [h["id"] for h in results[7]] == [1]                       # similar to 2: the other one
    assert open(tmp_path / "dog-copy.jpg", "rb").read() == open("/usr/share/darknet/data/dog.jpg", "rb").read()
    assert results[9] is True and by[cmds[10]]["message"] == "reindex finished"
    assert results[11] == 2 and results[12] == 1                      # delete one, then the rest
