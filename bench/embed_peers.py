"""embed_peers.py — the inference peers, run by bench/embed.py inside its throw-away venv.

    <venv>/bin/python bench/embed_peers.py MODEL.onnx INPUTS.f32 SECONDS OUT.json

INPUTS.f32 holds our preprocessed tensors, (n, 224, 224, 3) float32 NHWC; the peers get the same
numbers as NCHW. For ONNX Runtime (fp32: its CPU provider has no bf16 kernels) and OpenVINO (fp32,
and bf16 when the CPU has AVX512-BF16 or AMX), at batch 1 and 8 on 1 and 2 threads, it writes
images/s and the logits of the first 8 images, for embed.py to compare with ours.

    <venv>/bin/python bench/embed_peers.py --check MODEL.onnx INPUTS.f32 OUT.json

writes the logits and pooled features of every image in INPUTS.f32 (MODEL.onnx has both as
outputs), one image at a time on one thread, for each precision each peer offers here
(bench/precision.py compares them with fp32)."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import time_loop  # noqa: E402  (plain Python: it runs in the venv too)


def onnxruntime_runs(model, batches, seconds):
    import onnxruntime as ort
    out = []
    for threads in (1, 2):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        for b, x in batches.items():
            n, t = time_loop(lambda: s.run(None, {name: x}), seconds)
            out.append({"peer": "onnxruntime", "version": ort.__version__, "precision": "fp32", "batch": b,
                        "threads": threads, "images_per_sec": n * b / t,
                        "logits": s.run(None, {name: batches[8]})[0].tolist() if b == 8 else None})
        del s
    return out


def openvino_runs(model, batches, seconds):
    import openvino as ov
    core = ov.Core()
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    precisions = ["f32"] + (["bf16"] if "BF16" in caps else [])
    out = []
    for prec in precisions:
        for threads in (1, 2):
            for b, x in batches.items():
                m = core.read_model(model)
                m.reshape({m.inputs[0].get_any_name(): list(x.shape)})
                c = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": prec, "INFERENCE_NUM_THREADS": threads,
                                                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
                req = c.create_infer_request()
                n, t = time_loop(lambda: req.infer({0: x}), seconds)
                out.append({"peer": "openvino", "version": ov.__version__, "precision": prec, "batch": b,
                            "threads": threads, "images_per_sec": n * b / t,
                            "logits": req.infer({0: x})[c.outputs[0]].tolist() if b == 8 else None})
                del req, c  # its threads go before the next configuration is timed
    return out


def check_outputs(model, x):
    """{"<peer> <version> <precision>": {"logits": ..., "features": ...} of every image of x, run at
    batch 1 on one thread}; `model` has the two outputs (bench/precision.py exports it)."""
    import onnxruntime as ort
    import openvino as ov
    out = {}
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    runs = [s.run(None, {name: x[i:i + 1]}) for i in range(len(x))]
    out[f"ONNX Runtime {ort.__version__} fp32"] = {"logits": [r[0][0].tolist() for r in runs],
                                                   "features": [r[1][0].tolist() for r in runs]}
    core = ov.Core()
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    for prec in ["f32"] + (["bf16"] if "BF16" in caps else []):
        m = core.read_model(model)
        m.reshape({m.inputs[0].get_any_name(): [1, 3, 224, 224]})
        c = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": prec, "INFERENCE_NUM_THREADS": 1})
        req = c.create_infer_request()
        runs = [req.infer({0: np.ascontiguousarray(x[i:i + 1])}) for i in range(len(x))]
        out[f"OpenVINO {ov.__version__.split('-')[0]} {prec}"] = {
            "logits": [r[c.outputs[0]][0].tolist() for r in runs],
            "features": [r[c.outputs[1]][0].tolist() for r in runs]}
        del req, c
    return out


def main():
    if sys.argv[1] == "--check":
        model, inputs, out = sys.argv[2:5]
        x = np.fromfile(inputs, dtype=np.float32).reshape(-1, 224, 224, 3).transpose(0, 3, 1, 2)
        with open(out, "w") as f:
            json.dump(check_outputs(model, np.ascontiguousarray(x)), f)
        return
    model, inputs, seconds, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    x = np.fromfile(inputs, dtype=np.float32).reshape(-1, 224, 224, 3).transpose(0, 3, 1, 2)
    batches = {b: np.ascontiguousarray(x[np.arange(b) % len(x)]) for b in (1, 8)}
    rows = onnxruntime_runs(model, batches, seconds) + openvino_runs(model, batches, seconds)
    with open(out, "w") as f:
        json.dump(rows, f)
    for r in rows:
        print(f"  {r['peer']} {r['precision']} batch {r['batch']} threads {r['threads']}: "
              f"{r['images_per_sec']:.1f}/s", file=sys.stderr)


if __name__ == "__main__":
    main()
