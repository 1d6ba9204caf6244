"""The catalogue of one-bug variants and valid alternatives of every graded function,
shared by the tests that grade them (in-process, in nbgrader batches, by the copy scan).

A variant is the whole new source of a solution cell, or ``Sub(old, new)``: the solution cell
with one piece of text replaced (for long classes; :func:`apply_variant` fails loudly when
``old`` is no longer in the solution).
"""

from __future__ import annotations

from dataclasses import dataclass

from autograde_harness import lesson_cells


@dataclass(frozen=True)
class Sub:
    old: str
    new: str


BUGS: dict[tuple[str, str], dict[str, object]] = {
    # ---- 01 tokenizer
    ("01_tokenizer", "get_pair_counts"): {
        "counts each pair once": "def get_pair_counts(ids):\n"
                                 "    return Counter(set(zip(ids, ids[1:])))\n",
        "misses the last pair": "def get_pair_counts(ids):\n"
                                "    return Counter(zip(ids[:-1], ids[1:-1]))\n",
    },
    ("01_tokenizer", "merge_pair"): {
        "overlapping matches (no skip after a merge)": (
            "def merge_pair(ids, pair, new_id):\n"
            "    out = []\n"
            "    for i, token in enumerate(ids):\n"
            "        if i + 1 < len(ids) and (token, ids[i + 1]) == pair:\n"
            "            out.append(new_id)  # the second half is not skipped\n"
            "        elif i > 0 and (ids[i - 1], token) == pair:\n"
            "            continue  # ... unless it closes a match: 'aaa' -> X X\n"
            "        else:\n"
            "            out.append(token)\n"
            "    return out\n"),
        "drops the last id": (
            "def merge_pair(ids, pair, new_id):\n"
            "    out, i = [], 0\n"
            "    while i < len(ids) - 1:\n"
            "        if (ids[i], ids[i + 1]) == pair:\n"
            "            out.append(new_id)\n"
            "            i += 2\n"
            "        else:\n"
            "            out.append(ids[i])\n"
            "            i += 1\n"
            "    return out\n"),
    },
    ("01_tokenizer", "train_bpe"): {
        "ties go to the largest pair": Sub(
            "key=lambda pair: (-pair_counts[pair], pair)",
            "key=lambda pair: (-pair_counts[pair], (-pair[0], -pair[1]))"),
        "merges across pre-tokens": Sub(
            "word_counts = Counter(piece for text in texts for piece in pretokenize(text))",
            "word_counts = Counter(texts)"),
    },
    ("01_tokenizer", "encode"): {
        "applies merges by frequency in the text, not rank": (
            "def encode(text, merges):\n"
            "    rank = {tuple(p): i for i, p in enumerate(merges)}\n"
            "    ids = []\n"
            "    for piece in pretokenize(text):\n"
            "        piece_ids = list(piece.encode('utf-8'))\n"
            "        while len(piece_ids) >= 2:\n"
            "            counts = get_pair_counts(piece_ids)\n"
            "            known = [p for p in counts if p in rank]\n"
            "            if not known:\n"
            "                break\n"
            "            pair = max(known, key=lambda p: (counts[p], p))\n"
            "            piece_ids = merge_pair(piece_ids, pair, 256 + rank[pair])\n"
            "        ids.extend(piece_ids)\n"
            "    return ids\n"),
        "no pre-tokenization": (
            "def encode(text, merges):\n"
            "    ids = list(text.encode('utf-8'))\n"
            "    for i, pair in enumerate(merges):\n"
            "        ids = merge_pair(ids, tuple(pair), 256 + i)\n"
            "    return ids\n"),
    },
    ("01_tokenizer", "decode"): {
        "drops invalid UTF-8 instead of replacing it": (
            "def decode(ids, vocab):\n"
            "    return b''.join(vocab[i] for i in ids).decode('utf-8', errors='ignore')\n"),
        "decodes each token on its own": (
            "def decode(ids, vocab):\n"
            "    return ''.join(vocab[i].decode('utf-8', errors='replace') for i in ids)\n"),
    },
    # ---- 02 data
    ("02_data", "pack_stories"): {
        "EOT missing": (
            "def pack_stories(tokenizer, stories):\n"
            "    ids = [i for story in stories for i in tokenizer.encode(story)]\n"
            "    return np.array(ids, dtype=np.uint16)\n"),
        "EOT before each story": (
            "def pack_stories(tokenizer, stories):\n"
            "    ids = []\n"
            "    for story in stories:\n"
            "        ids.append(tokenizer.eot_id)\n"
            "        ids.extend(tokenizer.encode(story))\n"
            "    return np.array(ids, dtype=np.uint16)\n"),
        "int64 instead of uint16": (
            "def pack_stories(tokenizer, stories):\n"
            "    ids = []\n"
            "    for story in stories:\n"
            "        ids.extend(tokenizer.encode(story) + [tokenizer.eot_id])\n"
            "    return np.array(ids, dtype=np.int64)\n"),
        "fails on no stories": (
            "def pack_stories(tokenizer, stories):\n"
            "    pieces = [np.array(tokenizer.encode(story) + [tokenizer.eot_id], dtype=np.uint16)\n"
            "              for story in stories]\n"
            "    return np.concatenate(pieces)\n"),
    },
    ("02_data", "get_batch"): {
        "off-by-one targets": (
            "def get_batch(tokens, batch_size, context_length, generator=None, device='cpu'):\n"
            "    starts = torch.randint(len(tokens) - context_length, (batch_size,), generator=generator)\n"
            "    x = torch.stack([torch.from_numpy(tokens[s:s + context_length].astype(np.int64)) for s in starts.tolist()])\n"
            "    y = torch.stack([torch.from_numpy(tokens[s:s + context_length].astype(np.int64)) for s in starts.tolist()])\n"
            "    return x.to(device), y.to(device)\n"),
        "draws starts from the wrong range": (
            "def get_batch(tokens, batch_size, context_length, generator=None, device='cpu'):\n"
            "    starts = torch.randint(len(tokens) - context_length - 1, (batch_size,), generator=generator)\n"
            "    x = torch.stack([torch.from_numpy(tokens[s:s + context_length].astype(np.int64)) for s in starts.tolist()])\n"
            "    y = torch.stack([torch.from_numpy(tokens[s + 1:s + 1 + context_length].astype(np.int64)) for s in starts.tolist()])\n"
            "    return x.to(device), y.to(device)\n"),
    },
    # ---- 03 attention
    ("03_attention", "causal_mask"): {
        "upper triangle (sees the future)": (
            "def causal_mask(T, device=None):\n"
            "    return torch.ones(T, T, dtype=torch.bool, device=device).triu()\n"),
        "diagonal excluded": (
            "def causal_mask(T, device=None):\n"
            "    return torch.ones(T, T, dtype=torch.bool, device=device).tril(-1)\n"),
        "float mask": (
            "def causal_mask(T, device=None):\n"
            "    return torch.tril(torch.ones(T, T, device=device))\n"),
    },
    ("03_attention", "attention_weights"): {
        "no 1/sqrt(d) scale": (
            "def attention_weights(q, k, mask=None):\n"
            "    scores = q @ k.transpose(-2, -1)\n"
            "    if mask is not None:\n"
            "        scores = scores.masked_fill(~mask, float('-inf'))\n"
            "    return torch.softmax(scores, dim=-1)\n"),
        "softmax over the wrong axis": (
            "def attention_weights(q, k, mask=None):\n"
            "    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))\n"
            "    if mask is not None:\n"
            "        scores = scores.masked_fill(~mask, float('-inf'))\n"
            "    return torch.softmax(scores, dim=-2)\n"),
        "mask applied after the softmax": (
            "def attention_weights(q, k, mask=None):\n"
            "    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)\n"
            "    if mask is not None:\n"
            "        weights = weights.masked_fill(~mask, 0.0)\n"
            "    return weights\n"),
    },
    ("03_attention", "attention"): {
        "values and weights multiplied the wrong way": (
            "def attention(q, k, v, mask=None):\n"
            "    weights = attention_weights(q, k, mask)\n"
            "    return weights.transpose(-2, -1) @ v, weights\n"),
        "returns (weights, out)": (
            "def attention(q, k, v, mask=None):\n"
            "    weights = attention_weights(q, k, mask)\n"
            "    return weights, weights @ v\n"),
    },
    ("03_attention", "split_heads"): {
        "views straight to (B, H, T, D)": (
            "def split_heads(x, n_heads):\n"
            "    B, T, C = x.shape\n"
            "    return x.reshape(B, n_heads, T, C // n_heads)\n"),
    },
    ("03_attention", "merge_heads"): {
        "heads merged in the wrong order": (
            "def merge_heads(x):\n"
            "    B, H, T, D = x.shape\n"
            "    return x.reshape(B, T, H * D)\n"),
        "channels interleaved across heads": (
            "def merge_heads(x):\n"
            "    B, H, T, D = x.shape\n"
            "    return x.permute(0, 2, 3, 1).reshape(B, T, H * D)\n"),
    },
    ("03_attention", "MultiHeadAttention"): {
        "missing causal mask": Sub("causal_mask(T, x.device)", "None"),
        "q and k swapped in the qkv split": Sub(
            "q, k, v = self.qkv(x).split(self.d_model, dim=-1)",
            "k, q, v = self.qkv(x).split(self.d_model, dim=-1)"),
        "no output projection": Sub("self.proj(merge_heads(out))", "merge_heads(out)"),
    },
    # ---- 04 fused attention
    ("04_fused_attention", "fused_attention"): {
        "not causal": (
            "def fused_attention(q, k, v):\n"
            "    return F.scaled_dot_product_attention(q, k, v)\n"),
        "scale applied twice": (
            "def fused_attention(q, k, v):\n"
            "    return F.scaled_dot_product_attention(q / math.sqrt(q.size(-1)), k, v, is_causal=True)\n"),
    },
    ("04_fused_attention", "flash_attention"): {
        "no 1/sqrt(D) scale": Sub("q = q / math.sqrt(D)", "q = q"),
        "not causal": Sub(
            'scores = scores.masked_fill(key_position > query_position, float("-inf"))',
            "scores = scores"),
        "running sum not rescaled": Sub(
            "total = total * rescale + p.sum(dim=-1)", "total = total + p.sum(dim=-1)"),
        "lse without the running maximum": Sub("m + torch.log(total)", "torch.log(total)"),
        "builds the (T, T) causal mask": Sub(
            'scores = scores.masked_fill(key_position > query_position, float("-inf"))',
            "blocked = ~torch.ones(T, T, dtype=torch.bool, device=q.device).tril()\n"
            '        scores = scores.masked_fill(blocked[:, start:end], float("-inf"))'),
    },
    # ---- 05 gpt
    ("05_gpt", "LayerNorm"): {
        "unbiased variance": Sub(
            "variance = ((x - mean) ** 2).mean(dim=-1, keepdim=True)",
            "variance = x.var(dim=-1, keepdim=True)"),
        "eps outside the square root": Sub(
            "torch.sqrt(variance + self.eps)", "(torch.sqrt(variance) + self.eps)"),
        "normalises over the batch axis": Sub(
            "mean = x.mean(dim=-1, keepdim=True)", "mean = x.mean(dim=0, keepdim=True)"),
    },
    ("05_gpt", "MLP"): {
        "tanh-approximate GELU": Sub("F.gelu(self.fc(x))", "F.gelu(self.fc(x), approximate='tanh')"),
        "ReLU": Sub("F.gelu(self.fc(x))", "F.relu(self.fc(x))"),
    },
    ("05_gpt", "Block"): {
        "post-LN instead of pre-LN": Sub(
            "x = x + self.attn(self.ln1(x))\n        x = x + self.mlp(self.ln2(x))",
            "x = self.ln1(x + self.attn(x))\n        x = self.ln2(x + self.mlp(x))"),
        "no residual around the MLP": Sub(
            "x = x + self.mlp(self.ln2(x))", "x = self.mlp(self.ln2(x))"),
    },
    ("05_gpt", "GPT"): {
        "no position embedding": Sub(
            "x = self.tok_emb(idx) + self.pos_emb(positions)", "x = self.tok_emb(idx)"),
        "final LayerNorm skipped": Sub("self.head(self.ln_f(x))", "self.head(x)"),
        "always ties the head": Sub(
            "if config.tie_weights:\n            self.head.weight = self.tok_emb.weight",
            "self.head.weight = self.tok_emb.weight"),
    },
    ("05_gpt", "count_parameters"): {
        "counts the tied head twice": Sub(
            "head = 0 if config.tie_weights else V * C", "head = V * C"),
        "forgets the biases": Sub(
            "attention = (3 * C * C + 3 * C) + (C * C + C)", "attention = 3 * C * C + C * C"),
    },
    # ---- 06 training
    ("06_training", "cross_entropy_loss"): {
        "sum instead of mean": (
            "def cross_entropy_loss(logits, targets):\n"
            "    B, T, V = logits.shape\n"
            "    return F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T), reduction='sum')\n"),
        "targets shifted again": (
            "def cross_entropy_loss(logits, targets):\n"
            "    V = logits.size(-1)\n"
            "    return F.cross_entropy(logits[:, :-1].reshape(-1, V), targets[:, 1:].reshape(-1))\n"),
    },
    ("06_training", "perplexity"): {
        "2 ** loss": "def perplexity(loss):\n    return 2.0 ** float(loss)\n",
    },
    ("06_training", "lr_at"): {
        "warm-up starts at the peak": Sub(
            "return config.lr * (step + 1) / config.warmup_steps", "return config.lr"),
        "warm-up off by one": Sub(
            "return config.lr * (step + 1) / config.warmup_steps",
            "return config.lr * step / config.warmup_steps"),
        "cosine decays to zero, not min_lr": Sub(
            "return config.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (config.lr - config.min_lr)",
            "return 0.5 * (1 + math.cos(math.pi * progress)) * config.lr"),
    },
    ("06_training", "train_step"): {
        "never zeroes the gradients": Sub("optimizer.zero_grad(set_to_none=True)", "pass"),
        "no gradient clipping": Sub(
            "torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)", "pass"),
    },
    ("06_training", "AdamW"): {
        "L2 penalty in the gradient instead of decoupled decay": Sub(
            "param.mul_(1 - lr * group[\"weight_decay\"])  # 1. decay, decoupled\n"
            "                m.mul_(beta1).add_(g, alpha=1 - beta1)",
            "g = g + group[\"weight_decay\"] * param\n"
            "                m.mul_(beta1).add_(g, alpha=1 - beta1)"),
        "decay after the Adam step": (
            "class AdamW(torch.optim.Optimizer):\n"
            "    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):\n"
            "        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))\n"
            "\n"
            "    @torch.no_grad()\n"
            "    def step(self, closure=None):\n"
            "        for group in self.param_groups:\n"
            "            lr, (beta1, beta2), eps = group['lr'], group['betas'], group['eps']\n"
            "            for p in group['params']:\n"
            "                if p.grad is None:\n"
            "                    continue\n"
            "                state = self.state[p]\n"
            "                if not state:\n"
            "                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))\n"
            "                state['t'] += 1\n"
            "                t, m, v = state['t'], state['m'], state['v']\n"
            "                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)\n"
            "                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)\n"
            "                p.addcdiv_(m / (1 - beta1**t), (v / (1 - beta2**t)).sqrt() + eps, value=-lr)\n"
            "                p.mul_(1 - lr * group['weight_decay'])\n"),
        "no bias correction": Sub("m / (1 - beta1**t), v / (1 - beta2**t)", "m, v"),
        "eps inside the square root": Sub("v_hat.sqrt().add_(eps)", "v_hat.add(eps).sqrt()"),
        "lr read once, at construction": Sub(
            "lr, (beta1, beta2), eps = group[\"lr\"], group[\"betas\"], group[\"eps\"]",
            "lr, (beta1, beta2), eps = self.defaults[\"lr\"], group[\"betas\"], group[\"eps\"]"),
    },
    ("06_training", "clip_grad_norm"): {
        "clips each parameter on its own": (
            "def clip_grad_norm(parameters, max_norm):\n"
            "    params = [p for p in parameters if p.grad is not None]\n"
            "    norms = [p.grad.norm() for p in params]\n"
            "    for p, n in zip(params, norms):\n"
            "        if n > max_norm:\n"
            "            p.grad.mul_(max_norm / (n + 1e-6))\n"
            "    return torch.sqrt(sum(n ** 2 for n in norms))\n"),
        "returns the norm after clipping": Sub("    return norm\n",
                                               "    return min(norm, torch.tensor(max_norm))\n"),
        "reads the generator twice": (
            "def clip_grad_norm(parameters, max_norm):\n"
            "    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in parameters if p.grad is not None))\n"
            "    if norm > max_norm:\n"
            "        for p in parameters:\n"
            "            if p.grad is not None:\n"
            "                p.grad.mul_(max_norm / (norm + 1e-6))\n"
            "    return norm\n"),
    },
    ("06_training", "evaluate"): {
        "windows overlap (stride 1)": Sub(
            "x = torch.stack([tokens[i * T: i * T + T] for i in starts]).to(device)  # (b, T)\n"
            "            y = torch.stack([tokens[i * T + 1: i * T + T + 1] for i in starts]).to(device)",
            "x = torch.stack([tokens[i: i + T] for i in starts]).to(device)\n"
            "            y = torch.stack([tokens[i + 1: i + T + 1] for i in starts]).to(device)"),
        "leaves the model in eval mode": Sub("model.train(was_training)", "pass"),
    },
    # ---- 07 sampling
    ("07_sampling", "top_k_filter"): {
        "keeps k + 1": (
            "def top_k_filter(logits, k):\n"
            "    kth = torch.topk(logits, min(k + 1, logits.size(-1)), dim=-1).values[..., -1:]\n"
            "    return logits.masked_fill(logits < kth, float('-inf'))\n"),
    },
    ("07_sampling", "sample_next_token"): {
        "temperature multiplies instead of divides": Sub(
            "logits / temperature", "logits * temperature"),
        "ignores top_k": Sub("top_k_filter(", "(lambda logits, k: logits)("),
    },
    ("07_sampling", "generate"): {
        "does not stop at end-of-text": Sub("eos_id is not None", "False"),
        "tests `if eos_id:` (end-of-text id 0 ignored)": Sub(
            "eos_id is not None", "eos_id"),
        "does not crop to the context length": Sub("model(idx[:, -context_length:])",
                                                    "model(idx)"),
    },
    # ---- 08 modern gpt
    ("08_modern_gpt", "RMSNorm"): {
        "no square root": Sub("x / torch.sqrt(mean_square + self.eps)",
                              "x / (mean_square + self.eps)"),
    },
    ("08_modern_gpt", "rope_cache"): {
        "interleaved angles with the rotate-half apply": Sub(
            "angles = torch.cat([angles, angles], dim=-1)",
            "angles = angles.repeat_interleave(2, dim=-1)"),
    },
    ("08_modern_gpt", "apply_rope"): {
        "rotated the wrong way": Sub("torch.cat([-x[..., half:], x[..., :half]], dim=-1)",
                                     "torch.cat([x[..., half:], -x[..., :half]], dim=-1)"),
    },
    ("08_modern_gpt", "SwiGLU"): {
        "gate without SiLU": Sub("F.silu(self.gate(x)) * self.up(x)", "self.gate(x) * self.up(x)"),
    },
    ("08_modern_gpt", "GroupedQueryAttention"): {
        "no output projection": Sub("self.proj(merge_heads(fused_attention(q, k, v)))",
                                    "merge_heads(fused_attention(q, k, v))"),
    },
    ("08_modern_gpt", "ModernBlock"): {
        "no residual around the MLP": Sub("return x + self.mlp(self.norm2(x))",
                                          "return self.mlp(self.norm2(x))"),
    },
    ("08_modern_gpt", "ModernGPT"): {
        "no final norm": Sub("logits = self.head(self.norm_f(x))", "logits = self.head(x)"),
    },
}


ALTERNATIVES: dict[tuple[str, str], dict[str, str]] = {
    ("01_tokenizer", "get_pair_counts"): {
        "Counter over zip": "def get_pair_counts(ids):\n    return Counter(zip(ids, ids[1:]))\n",
    },
    ("01_tokenizer", "merge_pair"): {
        "for loop with a skip flag": (
            "def merge_pair(ids, pair, new_id):\n"
            "    out, skip = [], False\n"
            "    for i, token in enumerate(ids):\n"
            "        if skip:\n"
            "            skip = False\n"
            "            continue\n"
            "        if i + 1 < len(ids) and token == pair[0] and ids[i + 1] == pair[1]:\n"
            "            out.append(new_id)\n"
            "            skip = True\n"
            "        else:\n"
            "            out.append(token)\n"
            "    return out\n"),
    },
    ("01_tokenizer", "decode"): {
        "bytearray": (
            "def decode(ids, vocab):\n"
            "    data = bytearray()\n"
            "    for i in ids:\n"
            "        data += vocab[i]\n"
            "    return bytes(data).decode('utf-8', 'replace')\n"),
    },
    ("02_data", "pack_stories"): {
        "vectorized with np.concatenate": (
            "def pack_stories(tokenizer, stories):\n"
            "    parts = [np.array(tokenizer.encode(s) + [tokenizer.eot_id], dtype=np.uint16) for s in stories]\n"
            "    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint16)\n"),
    },
    ("02_data", "get_batch"): {
        "index arithmetic": (
            "def get_batch(tokens, batch_size, context_length, generator=None, device='cpu'):\n"
            "    starts = torch.randint(len(tokens) - context_length, (batch_size,), generator=generator)\n"
            "    data = torch.from_numpy(np.asarray(tokens).astype(np.int64))\n"
            "    index = starts[:, None] + torch.arange(context_length)[None, :]  # (B, T)\n"
            "    return data[index].to(device), data[index + 1].to(device)\n"),
    },
    ("03_attention", "causal_mask"): {
        "arange comparison": (
            "def causal_mask(T, device=None):\n"
            "    i = torch.arange(T, device=device)\n"
            "    return i[None, :] <= i[:, None]\n"),
    },
    ("03_attention", "attention_weights"): {
        "einsum instead of matmul": (
            "def attention_weights(q, k, mask=None):\n"
            "    scores = torch.einsum('bhtd,bhsd->bhts', q, k) * q.size(-1) ** -0.5\n"
            "    if mask is not None:\n"
            "        scores = torch.where(mask, scores, torch.tensor(float('-inf')))\n"
            "    return scores.softmax(-1)\n"),
    },
    ("03_attention", "attention"): {
        "einsum": (
            "def attention(q, k, v, mask=None):\n"
            "    weights = attention_weights(q, k, mask)\n"
            "    return torch.einsum('bhts,bhsd->bhtd', weights, v), weights\n"),
    },
    ("03_attention", "split_heads"): {
        "reshape and permute": (
            "def split_heads(x, n_heads):\n"
            "    B, T, C = x.shape\n"
            "    return x.reshape(B, T, n_heads, -1).permute(0, 2, 1, 3)\n"),
    },
    ("03_attention", "merge_heads"): {
        "permute, contiguous, view": (
            "def merge_heads(x):\n"
            "    B, H, T, D = x.shape\n"
            "    return x.permute(0, 2, 1, 3).contiguous().view(B, T, H * D)\n"),
    },
    ("05_gpt", "LayerNorm"): {
        "var(unbiased=False) and rsqrt": Sub(
            "variance = ((x - mean) ** 2).mean(dim=-1, keepdim=True)",
            "variance = x.var(dim=-1, keepdim=True, unbiased=False)"),
    },
    ("05_gpt", "count_parameters"): {
        "a loop over the parts": (
            "def count_parameters(config, non_embedding=False):\n"
            "    C, V = config.d_model, config.vocab_size\n"
            "    parts = []\n"
            "    for _ in range(config.n_layers):\n"
            "        parts += [2 * C, C * 3 * C + 3 * C, C * C + C, 2 * C,\n"
            "                  C * config.d_ff + config.d_ff, config.d_ff * C + C]\n"
            "    parts.append(2 * C)  # final LayerNorm\n"
            "    if not config.tie_weights:\n"
            "        parts.append(V * C)\n"
            "    if not non_embedding:\n"
            "        parts += [V * C, config.context_length * C]\n"
            "    return sum(parts)\n"),
    },
    ("06_training", "cross_entropy_loss"): {
        "log_softmax and gather": (
            "def cross_entropy_loss(logits, targets):\n"
            "    logp = torch.log_softmax(logits.float(), dim=-1)\n"
            "    return -logp.gather(-1, targets.unsqueeze(-1)).mean()\n"),
    },
    ("06_training", "perplexity"): {
        "torch.exp": "def perplexity(loss):\n    return torch.exp(torch.as_tensor(loss, dtype=torch.float64)).item()\n",
    },
    ("06_training", "AdamW"): {
        "PyTorch's form (step size lr / (1 - beta1^t))": Sub(
            "                m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)  # 3. bias-corrected step\n"
            "                param.addcdiv_(m_hat, v_hat.sqrt().add_(eps), value=-lr)",
            "                denominator = (v.sqrt() / math.sqrt(1 - beta2**t)).add_(eps)\n"
            "                param.addcdiv_(m, denominator, value=-lr / (1 - beta1**t))"),
    },
    ("06_training", "clip_grad_norm"): {
        "torch.linalg.vector_norm over a flat vector": (
            "def clip_grad_norm(parameters, max_norm):\n"
            "    grads = [p.grad for p in list(parameters) if p.grad is not None]\n"
            "    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))\n"
            "    scale = min(1.0, max_norm / (norm.item() + 1e-6))\n"
            "    for g in grads:\n"
            "        g.mul_(scale)\n"
            "    return norm.item()\n"),
    },
    ("07_sampling", "top_k_filter"): {
        "sort instead of topk": (
            "def top_k_filter(logits, k):\n"
            "    ordered = torch.sort(logits, dim=-1, descending=True).values\n"
            "    kth = ordered[..., min(k, logits.size(-1)) - 1:min(k, logits.size(-1))]\n"
            "    return torch.where(logits < kth, torch.full_like(logits, float('-inf')), logits)\n"),
    },
}


def apply_variant(lesson: str, grade_id: str, variant) -> dict[str, str]:
    if isinstance(variant, Sub):
        source = next(s for kind, gid, s in lesson_cells(lesson)
                      if kind == "solution" and gid == grade_id)
        assert variant.old in source, (
            f"{lesson}/{grade_id}: the variant's text {variant.old!r} is no longer in the "
            "solution cell; update the variant")
        variant = source.replace(variant.old, variant.new)
    return {grade_id: variant}
