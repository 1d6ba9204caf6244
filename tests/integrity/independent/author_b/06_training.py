# %% cross_entropy_loss
def cross_entropy_loss(logits, targets):
    """Mean cross entropy over all positions.

    logits (B, T, V), targets (B, T) int64 -> a 0-d tensor.
    """
    vocabulary_size = logits.shape[-1]
    flat_logits = logits.reshape(-1, vocabulary_size)      # (B*T, V)
    flat_targets = targets.reshape(-1, 1)                  # (B*T, 1)
    log_probabilities = torch.log_softmax(flat_logits, dim=-1)
    true_token_log_probability = torch.gather(log_probabilities, 1, flat_targets).squeeze(1)
    negative_log_likelihood = -true_token_log_probability
    return negative_log_likelihood.mean()

# %% perplexity
def perplexity(loss):
    """e ** loss, as a Python float; loss is a float or a 0-d tensor."""
    if isinstance(loss, torch.Tensor):
        loss_value = loss.detach().item()
    else:
        loss_value = float(loss)
    return math.exp(loss_value)

# %% lr_at
def lr_at(step, config):
    """Learning rate at 0-based `step`: linear warm-up, cosine from lr to min_lr, then min_lr."""
    peak_rate = config.lr
    floor_rate = config.min_lr
    warmup_length = config.warmup_steps
    final_step = config.max_steps

    if step < warmup_length:
        return peak_rate * (step + 1) / warmup_length
    if step >= final_step:
        return floor_rate
    decay_fraction = (step - warmup_length) / (final_step - warmup_length)
    cosine_weight = 0.5 * (1.0 + math.cos(math.pi * decay_fraction))
    return floor_rate + cosine_weight * (peak_rate - floor_rate)

# %% train_step
def train_step(model, optimizer, x, y, grad_clip=1.0):
    """One optimisation step on the batch x, y (B, T).

    Returns the loss (a float) before the update.
    """
    optimizer.zero_grad()
    predicted_logits, _ignored = model(x)
    batch_loss = cross_entropy_loss(predicted_logits, y)
    batch_loss.backward()
    should_clip = grad_clip is not None and grad_clip > 0
    if should_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    loss_number = batch_loss.item()
    return loss_number

# %% evaluate
def evaluate(model, tokens, context_length, batch_size=32, max_batches=None):
    """Mean loss over fixed non-overlapping windows of `tokens`.

    Returns {"loss": float, "perplexity": float}.
    """
    model_device = next(model.parameters()).device
    if isinstance(tokens, torch.Tensor):
        all_tokens = tokens.detach().to("cpu").to(torch.int64)
    else:
        all_tokens = torch.from_numpy(np.asarray(tokens).astype(np.int64))

    window_count = (len(all_tokens) - 1) // context_length
    summed_loss = 0.0
    counted_positions = 0
    finished_batches = 0

    previously_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for first_window in range(0, window_count, batch_size):
                if max_batches is not None and finished_batches >= max_batches:
                    break
                last_window = min(first_window + batch_size, window_count)
                input_rows = []
                target_rows = []
                for window_number in range(first_window, last_window):
                    offset = window_number * context_length
                    input_rows.append(all_tokens[offset:offset + context_length])
                    target_rows.append(all_tokens[offset + 1:offset + context_length + 1])
                inputs = torch.stack(input_rows).to(model_device)
                targets = torch.stack(target_rows).to(model_device)
                logits, _ignored = model(inputs)
                batch_mean = cross_entropy_loss(logits, targets).item()
                positions_in_batch = targets.numel()
                summed_loss += batch_mean * positions_in_batch  # weight by its token count
                counted_positions += positions_in_batch
                finished_batches += 1
    finally:
        model.train(previously_training)

    if counted_positions == 0:
        mean_loss = float("nan")
    else:
        mean_loss = summed_loss / counted_positions
    return {"loss": mean_loss, "perplexity": perplexity(mean_loss)}
