"""Writes deploy/k8s/'s plain manifests: the Helm chart deploy/helm/tensorgrid, rendered.

    python deploy/k8s/render.py          # rewrite the files
    python deploy/k8s/render.py --check  # exit 1 when a file differs from a fresh rendering

The plain manifests are what `helm template tensorgrid deploy/helm/tensorgrid --set
token.existingSecret=tensorgrid-token` prints (the GPU workers' file with gpuWorkers.replicas=1),
so the chart and the files never drift apart: tests/test_k8s.py fails when they do. They take the
token from a Secret made beforehand (deploy/README.md), never from a file in the repository.

Renders with Helm's own engine through helm-python-sdk (the `dev` extra), so no `helm` binary is
needed.
"""

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHART = HERE.parent / "helm" / "tensorgrid"
RELEASE = "tensorgrid"
SECRET = "tensorgrid-token"
HEADER = ("# Generated from deploy/helm/tensorgrid by `python deploy/k8s/render.py` (the chart's defaults, the\n"
          f"# token from the Secret {SECRET}): edit the chart and rerun it, never this file.\n")
# file under deploy/k8s -> (the chart's template, the values it is rendered with)
FILES = {
    "master.yaml": ("templates/master.yaml", {}),
    "workers.yaml": ("templates/workers.yaml", {}),
    "gpu/gpu-workers.yaml": ("templates/gpu-workers.yaml", {"gpuWorkers": {"replicas": 1}}),
}


def render(values=None, release=RELEASE, namespace="default"):
    """The chart rendered offline with `values`: {template path under the chart: manifest text}."""
    import helm_python
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values=values, name=release, namespace=namespace)
    prefix = f"{chart_name()}/"
    return {path[len(prefix):]: _tidy(text) for path, text in rendered.items() if _tidy(text)}


def chart_name():
    for line in (CHART / "Chart.yaml").read_text().splitlines():
        if line.startswith("name:"):
            return line.split(":", 1)[1].strip()
    raise SystemExit(f"{CHART / 'Chart.yaml'} names no chart")


def _tidy(text):
    """A rendered template without the blank lines and trailing spaces that template actions leave."""
    lines = [line.rstrip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line) + "\n" if any(lines) else ""


def plain_manifests():
    """{file under deploy/k8s: its text} as the chart renders them now."""
    out = {}
    for name, (template, values) in FILES.items():
        merged = {"token": {"existingSecret": SECRET}, **values}
        out[name] = HEADER + render(merged)[template]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description="Render deploy/helm/tensorgrid into deploy/k8s/.")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, text in plain_manifests().items():
        path = HERE / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote deploy/k8s/{name}")
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; run python deploy/k8s/render.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
