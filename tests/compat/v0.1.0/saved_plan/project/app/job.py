import json, os, pathlib
content = pathlib.Path(os.environ["CONTENT_DIR"])
params = json.loads((content / "params.json").read_text())
with open(os.environ["RUNS_LOG"], "a") as fh:
    fh.write(params["name"] + "\n")
(content / "artifacts" / "out.txt").write_text(json.dumps(params))
