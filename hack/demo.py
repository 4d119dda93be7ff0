"""`make demo`: a real FFmpeg job end to end on the local stack, through both front doors.

1. Generates a 5-second test clip with FFmpeg (lavfi testsrc + sine).
2. REST ("FFmpeg API" surface): registers a file, uploads it to the presigned PUT URL,
   runs /ffmpeg/process, and downloads the result through its presigned URL.
3. The `kubeffmpeg` command line: uploads the clip, runs the same scale with a live progress bar,
   and downloads the result.
4. kubectl: applies an FFmpegJob reading the same uploaded file, waits for Succeeded, and
   prints its status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from devstack.stack import Stack


def step(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def main() -> int:
    stack = Stack()
    env = {**os.environ, **stack.read_env()}
    env["PATH"] = f"{stack._bins().kube}:{env['PATH']}"
    api, key = env["API_URL"], env["API_KEY"]
    headers = {"Authorization": f"Basic {key}"}
    work = Path(tempfile.mkdtemp(prefix="kubeffmpeg-demo-"))

    step("generating a 5 s test clip with FFmpeg")
    clip = work / "input.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440", "-t", "5", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-shortest", str(clip)],
        check=True,
    )
    print(f"    {clip} ({clip.stat().st_size} bytes)")

    with httpx.Client(base_url=api, headers=headers, timeout=180) as http:
        step("POST /file: register input.mp4 and get a presigned upload URL")
        reg = http.post("/file", json={"file_name": "input.mp4"}).raise_for_status().json()
        print("    " + json.dumps(reg["file"]))
        httpx.put(reg["upload"]["url"], content=clip.read_bytes(), timeout=60).raise_for_status()
        dir_id = reg["file"]["dir_id"]

        step("POST /ffmpeg/process: scale to 320x180 (synchronous)")
        t0 = time.monotonic()
        task = {"task": {"inputs": [{"file_path": f"{dir_id}/input.mp4"}],
                         "outputs": [{"file": "small.mp4", "options": ["-vf", "scale=320:180", "-crf", "28"]}]}}
        res = http.post("/ffmpeg/process", json=task).raise_for_status().json()
        print(f"    done in {time.monotonic() - t0:.1f}s: " + json.dumps(res["result"][0] | {"download_url": "..."}))
        print("    usage: " + json.dumps(res["usage"]))
        out = work / "small.mp4"
        out.write_bytes(httpx.get(res["result"][0]["download_url"], timeout=60).raise_for_status().content)
        probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                                "stream=width,height", "-of", "csv=p=0", str(out)],
                               capture_output=True, text=True, check=True).stdout.strip()
        print(f"    downloaded {out} ({out.stat().st_size} bytes, {probe})")

    step("kubeffmpeg run: the same scale from the command line (upload, live progress, download)")
    kubeffmpeg = Path(sys.executable).parent / "kubeffmpeg"
    subprocess.run([str(kubeffmpeg), "run", "-i", str(clip), "--dest", str(work), "--",
                    "-i", "{{in}}", "-vf", "scale=320:180", "-crf", "28", "{{cli.mp4}}"], env=env, check=True)

    step("kubectl apply: the same work as an FFmpegJob")
    name = f"demo-{int(time.time())}"
    job = {
        "apiVersion": "kubeffmpeg.io/v1alpha1",
        "kind": "FFmpegJob",
        "metadata": {"name": name, "namespace": env["FFMPEG_NAMESPACE"]},
        "spec": {
            "inputs": [{"name": "input", "source": f"{dir_id}/input.mp4"}],
            "outputs": [{"name": "thumb.jpg"}, {"name": "audio.m4a"}],
            "commands": ["-i {{input}} -ss 1 -frames:v 1 {{thumb.jpg}}",
                         "-i {{input}} -vn -c:a aac -b:a 64k {{audio.m4a}}"],
            "machine": "cpu",
            "output": {"dirId": dir_id},
        },
    }
    subprocess.run(["kubectl", "apply", "-f", "-"], input=json.dumps(job), text=True, env=env, check=True)
    subprocess.run(["kubectl", "wait", "-n", env["FFMPEG_NAMESPACE"], "--for=jsonpath={.status.phase}=Succeeded",
                    "--timeout=180s", f"ffmpegjob/{name}"], env=env, check=True)
    subprocess.run(["kubectl", "get", "ffj", "-n", env["FFMPEG_NAMESPACE"], name], env=env, check=True)
    status = json.loads(subprocess.run(["kubectl", "get", "ffj", "-n", env["FFMPEG_NAMESPACE"], name, "-o",
                                        "jsonpath={.status}"], env=env, capture_output=True, text=True,
                                       check=True).stdout)
    for r in status["result"]:
        print(f"    s3://{env['S3_BUCKET']}/files/default/{r['storagePath']} ({r['sizeBytes']} bytes)")
    print("    usage: " + json.dumps(status["usage"]))

    step("done")
    print(f"    REST output downloaded to {work / 'small.mp4'}")
    print(f"    stored outputs: directory {dir_id}; list them with:")
    print(f'    curl -H "Authorization: Basic $API_KEY" $API_URL/directory/{dir_id}')
    return 0


if __name__ == "__main__":
    sys.exit(main())
