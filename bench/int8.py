#!/usr/bin/python3
"""int8.py — would int8 inference (VNNI) keep EfficientNet-Lite0's embeddings within the bar?

Issue 14 asks for reduced precision only where the embeddings stay within cosine 0.995 of fp32
with the same top-1 class. This simulates post-training int8 quantisation in PyTorch, on the
reference network with batch norm folded into the convolutions as our engine folds it, on every
photo Debian packages ship (tools/packaged_images.py, as bench/precision.py), preprocessed by our
decoder:
  - weights: symmetric int8 per output channel (what oneDNN's int8 convolutions take);
  - activations: one scale per tensor, as oneDNN's int8 convolutions take them: u8 for the ReLU6
    outputs (scale 6/255) and s8 for the block inputs (the residual stream, scale = the largest
    magnitude seen), calibrated on the very photos measured (which flatters int8), or computed
    per image at run time ("dynamic");
  - the stem and the first two blocks stay as they are (our bf16 net keeps the stem's output and
    the first depthwise convolution in f32 already).
For each scheme: the pooled features' cosine to fp32 (lowest, mean, how many below 0.995) and
top-1 agreement. Rounding is simulated in float (fake quantisation), so what is measured is the
information int8 keeps, not a kernel's speed. A bench: it reports, it judges nothing.

    /usr/bin/python3 bench/int8.py   (after building; about two minutes)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import embed  # noqa: E402  (the reference model, our tensors)

sys.path.insert(0, os.path.join(embed.ROOT, "tools"))
from packaged_images import packaged_photos  # noqa: E402

np, torch = embed.np, embed.torch
FIRST = 2  # blocks before this one keep their precision


def fold(conv, bn):
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv.weight.data = conv.weight.data * s.view(-1, 1, 1, 1)
    conv.bias = torch.nn.Parameter(bn.bias - bn.running_mean * s)


def folded():
    net = embed.torch_model()
    fold(net._conv_stem, net._bn0)
    fold(net._conv_head, net._bn1)
    net._bn0 = net._bn1 = torch.nn.Identity()
    for b in net._blocks:
        if hasattr(b, "_expand_conv"):
            fold(b._expand_conv, b._bn0)
            b._bn0 = torch.nn.Identity()
        fold(b._depthwise_conv, b._bn1)
        fold(b._project_conv, b._bn2)
        b._bn1 = b._bn2 = torch.nn.Identity()
    return net


def convs(net, first):
    """(name, conv, reads a ReLU6 output) for every convolution from block `first` on, and the head."""
    out = []
    for i, b in enumerate(net._blocks):
        if i < first:
            continue
        if hasattr(b, "_expand_conv"):
            out.append((f"expand{i}", b._expand_conv, False))
        out.append((f"depthwise{i}", b._depthwise_conv, True))
        out.append((f"project{i}", b._project_conv, True))
    out.append(("head", net._conv_head, False))  # reads the last block's output: signed
    return out


def q_weights(w):
    s = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12) / 127
    return torch.round(w / s).clamp(-127, 127) * s


def q_act(x, scale, unsigned):
    lo, hi = (0, 255) if unsigned else (-128, 127)
    return torch.round(x / scale).clamp(lo, hi) * scale


def q_act_dynamic(x, unsigned):
    s = x.abs().flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1, 1) / (255 if unsigned else 127)
    return q_act(x, s, unsigned)


def run(net, x):
    with torch.no_grad():
        feats, logits = [], []
        for i in range(0, len(x), 16):
            f = net.extract_features(x[i:i + 16]).mean((2, 3))
            feats.append(f.numpy())
            logits.append(net._fc(f).numpy())
    return np.concatenate(feats).astype(np.float64), np.concatenate(logits)


def calibrate(x):
    """Largest input magnitude of every quantised convolution over the photos."""
    net, seen = folded(), {}

    def hook(name):
        return lambda m, i: seen.__setitem__(name, max(seen.get(name, 0.0), float(i[0].abs().max())))
    for name, c, _ in convs(net, FIRST):
        c.register_forward_pre_hook(hook(name))
    run(net, x)
    return seen


def quantised(cal, weights=True, acts="static", first=FIRST, kinds=("expand", "depthwise", "project", "head")):
    net = folded()
    for name, c, relu_in in convs(net, first):
        if not name.startswith(kinds):
            continue
        if weights:
            c.weight.data = q_weights(c.weight.data)
        if acts == "dynamic":
            c.register_forward_pre_hook(lambda m, i, u=relu_in: (q_act_dynamic(i[0], u),))
        elif acts == "static":
            scale = 6 / 255 if relu_in else cal[name] / 127
            c.register_forward_pre_hook(lambda m, i, s=scale, u=relu_in: (q_act(i[0], s, u),))
    return net


def main():
    photos = [p["path"] for p in packaged_photos()]
    imgsearch = os.path.join(embed.ROOT, "build", "imgsearch")
    model = os.path.join(embed.ROOT, "models", "efficientnet_lite0.json")
    print(f"{len(photos)} photos: preprocessing ...", file=sys.stderr)
    x = torch.from_numpy(embed.dump_inputs(imgsearch, model, photos)).permute(0, 3, 1, 2).contiguous()
    torch.set_num_threads(2)
    ref_f, ref_l = run(embed.torch_model(), x)
    cal = calibrate(x)
    schemes = [
        ("int8 weights and activations, blocks 2-15 and head", quantised(cal)),
        ("int8 weights only", quantised(cal, acts=None)),
        ("int8 activations only", quantised(cal, weights=False)),
        ("int8, activation scales per image (dynamic)", quantised(cal, acts="dynamic")),
        ("int8 without the depthwise convolutions", quantised(cal, kinds=("expand", "project", "head"))),
        ("int8 depthwise convolutions only", quantised(cal, kinds=("depthwise",))),
        ("int8 from block 4", quantised(cal, first=4)),
        ("int8 from block 8", quantised(cal, first=8)),
    ]
    print(f"\nint8 post-training quantisation, simulated — {len(photos)} packaged photos, pooled features "
          "against fp32\n")
    print("| scheme | lowest cosine | mean | below 0.995 | top-1 agrees |")
    print("|---|---|---|---|---|")
    for name, net in schemes:
        f, lg = run(net, x)
        c = (ref_f * f).sum(1) / np.linalg.norm(ref_f, axis=1) / np.linalg.norm(f, axis=1)
        top = int((lg.argmax(1) == ref_l.argmax(1)).sum())
        print(f"| {name} | {c.min():.4f} | {c.mean():.4f} | {int((c < 0.995).sum())} | {top}/{len(photos)} |",
              flush=True)


if __name__ == "__main__":
    main()
