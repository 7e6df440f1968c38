"""Generate text from a model exported by `charrnn export --format onnx`, with onnxruntime and numpy only.

    python examples/onnx_sample.py MODEL.onnx --prime "ROMEO:" --length 300 --temperature 0.8 --seed 1

No torch and no charrnn: the vocabulary, level and sizes are read from the model file's metadata. Prints the
prime and the new text to stdout, with a final newline, as `charrnn sample` does. A character-level model
refuses a prime character it does not know; a byte-level one takes any text (as UTF-8) and its output is
decoded incrementally, so a character shows once all its bytes have arrived.
"""

from __future__ import annotations

import argparse
import codecs
import json
import sys

import numpy as np
import onnxruntime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--prime", default="\n")
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=1.0, help="0 is greedy")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if args.length < 0 or args.temperature < 0 or not args.prime:
        sys.exit("error: --length and --temperature must be 0 or more, and --prime not empty")

    session = onnxruntime.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("charrnn_format") != "charrnn-safetensors":
        sys.exit(f"error: {args.model} was not exported by charrnn (no charrnn metadata)")
    config = json.loads(meta["model_config"])
    vocab = json.loads(meta["vocab"])
    byte_level = meta["level"] == "byte"
    lstm = config["cell"] == "lstm"

    if byte_level:
        prime_ids = list(args.prime.encode("utf-8"))
    else:
        index = {c: i for i, c in enumerate(vocab)}
        unknown = sorted({c for c in args.prime if c not in index})
        if unknown:
            sys.exit(f"error: the prime has characters the model does not know: {unknown}")
        prime_ids = [index[c] for c in args.prime]

    shape = (config["layers"], 1, config["hidden"])
    state = {"h": np.zeros(shape, np.float32)}
    if lstm:
        state["c"] = np.zeros(shape, np.float32)

    def run(ids: list[int]) -> np.ndarray:
        outputs = session.run(None, {"ids": np.array([ids], dtype=np.int64), **state})
        state["h"] = outputs[1]
        if lstm:
            state["c"] = outputs[2]
        return outputs[0][0, -1].astype(np.float64)  # the next symbol's logits

    rng = np.random.default_rng(args.seed)
    decoder = codecs.getincrementaldecoder("utf-8")("replace") if byte_level else None
    out = sys.stdout
    out.write(args.prime)
    logits = run(prime_ids)
    for _ in range(args.length):
        if args.temperature == 0:
            symbol = int(np.argmax(logits))
        else:
            z = logits / args.temperature
            p = np.exp(z - z.max())
            symbol = int(rng.choice(len(p), p=p / p.sum()))
        out.write(decoder.decode(bytes([symbol])) if decoder else vocab[symbol])
        logits = run([symbol])
    if decoder:
        out.write(decoder.decode(b"", final=True))
    out.write("\n")
    out.flush()


if __name__ == "__main__":
    main()
