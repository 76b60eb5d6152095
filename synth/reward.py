"""The reward-model step: a batched sequence-classification pass that keeps the better of two answers.

Online default (the paper): sfairXC/FsfairX-LLaMA3-RM-v0.1, scored as the released RM_filter.py does
(chat template of [user: instruction, assistant: answer], one scalar logit). Offline there is no reward
model: `seeded_head: true` puts a randomly initialised score head, seeded by `seed`, on a causal LM
(the embedded SmolLM2). That exercises batching, resume and selection only; its preferences mean
nothing.

Resumable: records are processed in fixed batches of the sorted input; each finished batch is one
atomically written file, so a killed run redoes at most one batch.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from .config import EMBEDDED, RewardConfig
from .records import read_jsonl, write_jsonl


def _model_path(name: str) -> str:
    if name == EMBEDDED:
        from finemed_eval.embedded import embedded_model_dir

        return str(embedded_model_dir())
    return name


class RewardModel:
    def __init__(self, config: RewardConfig, seed: int):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = _model_path(config.model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch.manual_seed(seed)  # the seeded head (offline) is initialised from this
        device = config.device if config.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype).to(device).eval()
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.device, self.max_length, self.torch = device, config.max_length, torch

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        texts = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": q}, {"role": "assistant", "content": a}], tokenize=False
            )
            for q, a in pairs
        ]
        if self.tokenizer.bos_token:
            texts = [t.replace(self.tokenizer.bos_token, "") for t in texts]  # as RM_filter.py: the tokenizer adds it
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        with self.torch.no_grad():
            logits = self.model(**batch.to(self.device)).logits[:, 0]
        return [float(x) for x in logits.float().cpu()]


def run_reward(records: list[dict], out_dir: Path, config: RewardConfig, seed: int, progress: bool = True) -> list[dict]:
    """Score answer1/answer2 of every record; return records with `rewards` and the chosen `response`."""
    batches = [records[i : i + config.batch_size] for i in range(0, len(records), config.batch_size)]
    todo = [i for i in range(len(batches)) if not (out_dir / f"batch-{i:05d}.jsonl").is_file()]
    model = RewardModel(config, seed) if todo else None
    for i in tqdm(todo, desc="reward", unit="batch", disable=not progress):
        batch = batches[i]
        pairs = [(r["instruction"], r[key]) for r in batch for key in ("answer1", "answer2")]
        scores = model.score(pairs)
        out = []
        for j, record in enumerate(batch):
            r1, r2 = scores[2 * j], scores[2 * j + 1]
            better = "answer1" if r1 >= r2 else "answer2"
            out.append(
                {**record, "stage": "reward", "status": "ok", "tokens": {"prompt": 0, "completion": 0}, "rewards": [r1, r2], "preferred": better, "response": record[better]}
            )
        write_jsonl(out_dir / f"batch-{i:05d}.jsonl", out)
    return [r for i in range(len(batches)) for r in read_jsonl(out_dir / f"batch-{i:05d}.jsonl")]
