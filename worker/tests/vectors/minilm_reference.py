#!/usr/bin/env python3
"""Computes the reference embeddings in minilm_reference.json, once, independently of the Rust
code: all-MiniLM-L6-v2 written out in numpy (BERT encoder, mean pooling over real tokens, L2
normalisation, as sentence-transformers does), tokenised by the Hugging Face `tokenizers`
package with max_seq_length 256 and no padding.

Not run by CI (it needs numpy, safetensors and tokenizers from PyPI). To regenerate:
    pip install numpy safetensors tokenizers
    python3 worker/tests/vectors/minilm_reference.py MODEL_DIR > worker/tests/vectors/minilm_reference.json
where MODEL_DIR holds model.safetensors, tokenizer.json and config.json (`cairn models fetch minilm`).
"""
import hashlib
import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SENTENCES = [
    "A man is playing a guitar.",
    "Someone is strumming a guitar.",
    "The stock market fell sharply today.",
    "Bitcoin blocks are found about every ten minutes.",
    "",
    "Cairn anchors its history in Bitcoin; workers earn satoshis for verified AI work.",
]

erf = np.vectorize(math.erf)


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def embed(W, cfg, ids):
    x = W["embeddings.word_embeddings.weight"][ids]
    x = x + W["embeddings.position_embeddings.weight"][: len(ids)]
    x = x + W["embeddings.token_type_embeddings.weight"][0]
    eps = cfg["layer_norm_eps"]
    x = layer_norm(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], eps)
    heads = cfg["num_attention_heads"]
    d = cfg["hidden_size"] // heads
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda n, h: h @ W[p + n + ".weight"].T + W[p + n + ".bias"]
        q, k, v = (lin("attention.self." + n, x) for n in ("query", "key", "value"))
        split = lambda t: t.reshape(len(ids), heads, d).transpose(1, 0, 2)
        s = split(q) @ split(k).transpose(0, 2, 1) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        ctx = (s @ split(v)).transpose(1, 0, 2).reshape(len(ids), heads * d)
        a = layer_norm(lin("attention.output.dense", ctx) + x,
                       W[p + "attention.output.LayerNorm.weight"], W[p + "attention.output.LayerNorm.bias"], eps)
        h = lin("intermediate.dense", a)
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        x = layer_norm(lin("output.dense", h) + a, W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"], eps)
    v = x.mean(0)
    return v / max(np.linalg.norm(v), 1e-12)


def main():
    d = sys.argv[1]
    W = {k: v.astype(np.float64) for k, v in load_file(f"{d}/model.safetensors").items()}
    cfg = json.load(open(f"{d}/config.json"))
    tok = Tokenizer.from_file(f"{d}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(256)
    out = []
    for s in SENTENCES:
        ids = tok.encode(s).ids
        out.append({"sentence": s, "tokens": len(ids), "embedding": [round(float(x), 8) for x in embed(W, cfg, ids)]})
    sha = hashlib.sha256(open(f"{d}/model.safetensors", "rb").read()).hexdigest()
    json.dump({
        "description": "all-MiniLM-L6-v2 sentence embeddings computed in float64 numpy by minilm_reference.py (independent of candle)",
        "model_sha256": sha,
        "vectors": out,
    }, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
