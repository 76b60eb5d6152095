"""Small models cut from SmolLM2-135M-Instruct for trying recipes on a CPU in seconds.

    python -m finemed_eval.training.tiny OUT_DIR [--layers 2] [--hidden-size 64]

Without --hidden-size: SmolLM2's real embeddings and first `layers` decoder layers. With it: the same
architecture, tokenizer and chat template at that width, initialised at random from `seed` (what the
tests use: the 49k-token vocabulary dominates the cost, and a narrow model trains ~10x faster).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def derive_tiny_model(
    out: str | Path, layers: int = 2, hidden_size: int | None = None, source: str = "smollm2-135m-instruct", seed: int = 0
) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from finemed_eval import zoo

    path = zoo.resolve_pretrained(source)
    if hidden_size is None:
        model = AutoModelForCausalLM.from_pretrained(path)
        model.model.layers = model.model.layers[:layers]
        model.config.num_hidden_layers = layers
    else:
        config = AutoConfig.from_pretrained(path)
        heads = max(1, hidden_size // 16)
        config.update(
            {
                "num_hidden_layers": layers,
                "hidden_size": hidden_size,
                "intermediate_size": 2 * hidden_size,
                "num_attention_heads": heads,
                "num_key_value_heads": heads,
                "head_dim": 16,
            }
        )
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:layers]
    out = Path(out)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(path).save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden-size", type=int, default=None)
    args = parser.parse_args()
    print(derive_tiny_model(args.out, args.layers, args.hidden_size))


if __name__ == "__main__":
    main()
