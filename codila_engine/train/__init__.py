"""Training: tokenizer, Dream-format DLM, Qwen3 AR (`codila train ...`, see cli.py).

corpus/instructions/humaneval: documents, deduplicated, HumanEval kept out, split by hash.
sequences/data: documents as fixed-length token sequences with a target region, cached.
masking: the noise (pure functions). models: shapes and checkpoint folders.
loop: the shared optimisation loop. dlm_pretrain/ar_pretrain: the losses and entry points.
"""
