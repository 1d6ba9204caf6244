# %% cross_entropy_loss
def cross_entropy_loss(logits, targets):
    """Mean cross entropy over all positions.

    logits (B, T, V), targets (B, T) int64 -> a 0-d tensor.
    """
    vocab = logits.size(-1)
    return F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))

# %% perplexity
def perplexity(loss):
    """e ** loss, as a Python float; loss is a float or a 0-d tensor."""
    if isinstance(loss, torch.Tensor):
        loss = loss.detach().item()
    return math.exp(loss)

# %% lr_at
def lr_at(step, config):
    """Learning rate at 0-based `step`: linear warm-up, cosine from lr to min_lr, then min_lr."""
    peak, floor = config.lr, config.min_lr
    warmup, total = config.warmup_steps, config.max_steps
    if step < warmup:
        return peak * (step + 1) / warmup
    if step >= total:
        return floor
    frac = (step - warmup) / (total - warmup)
    return floor + 0.5 * (1.0 + math.cos(math.pi * frac)) * (peak - floor)

# %% train_step
def train_step(model, optimizer, x, y, grad_clip=1.0):
    """One optimisation step on the batch x, y (B, T).

    Returns the loss (a float) before the update.
    """
    optimizer.zero_grad()
    logits, _ = model(x)
    loss = cross_entropy_loss(logits, y)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()

# %% evaluate
def evaluate(model, tokens, context_length, batch_size=32, max_batches=None):
    """Mean loss over fixed non-overlapping windows of `tokens`.

    Returns {"loss": float, "perplexity": float}.
    """
    if isinstance(tokens, np.ndarray):
        data = torch.from_numpy(tokens.astype(np.int64))
    else:
        data = torch.as_tensor(tokens).long()
    T = context_length
    n_windows = (len(data) - 1) // T
    inputs = data[:n_windows * T].view(n_windows, T)
    targets = data[1:n_windows * T + 1].view(n_windows, T)

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum, token_count = 0.0, 0
    try:
        with torch.no_grad():
            for batch_index, first in enumerate(range(0, n_windows, batch_size)):
                if max_batches is not None and batch_index >= max_batches:
                    break
                xb = inputs[first:first + batch_size].to(device)
                yb = targets[first:first + batch_size].to(device)
                logits, _ = model(xb)
                batch_loss = cross_entropy_loss(logits, yb).item()
                loss_sum += batch_loss * yb.numel()
                token_count += yb.numel()
    finally:
        model.train(was_training)
    mean_loss = loss_sum / token_count
    return {"loss": mean_loss, "perplexity": perplexity(mean_loss)}
