"""The story playground of lesson 07: a prompt, sliders for temperature, top-k and length, and
a button that asks the student's model for a new story (ipywidgets)."""

from __future__ import annotations

import torch

from nanolm_lib.course.sampling import tell_story

# One label width for every control: whole labels ("temperature", not "temperat..."), and
# sliders that line up.
LABEL_STYLE = {"description_width": "8.5em"}


def write_story(model, tokenizer, prompt: str = "", temperature: float = 0.8, top_k: int = 40,
                length: int | None = None, seed: int | None = None) -> str:
    """One story that starts with ``prompt``: top-k 0 means no top-k, ``length`` (new tokens)
    is at most one context; ``seed`` makes it reproducible."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    context_length = model.config.context_length
    length = min(length or context_length, context_length)
    return tell_story(model, tokenizer, prompt, max_new_tokens=length, temperature=temperature,
                      top_k=top_k or None, generator=generator)


def story_playground(model, tokenizer, prompt: str = "Once upon a time"):
    """Show the playground with a first story in it; returns its ``VBox``.

    Without ipywidgets it prints one story instead and returns None.
    """
    try:
        import ipywidgets as widgets
        from IPython.display import display
    except ImportError as error:
        print(f"(widgets unavailable: {error}); one story instead:\n")
        print(write_story(model, tokenizer, prompt, seed=0))
        return None
    context_length = model.config.context_length
    prompt_box = widgets.Text(value=prompt, description="prompt", style=LABEL_STYLE,
                              layout=widgets.Layout(width="60%"))
    temperature = widgets.FloatSlider(value=0.8, min=0.0, max=2.0, step=0.05,
                                      description="temperature", style=LABEL_STYLE)
    top_k = widgets.IntSlider(value=40, min=0, max=min(200, model.config.vocab_size),
                              description="top-k (0 = off)", style=LABEL_STYLE)
    length = widgets.IntSlider(value=context_length, min=8, max=context_length,
                               description="max tokens", style=LABEL_STYLE)
    button = widgets.Button(description="Tell a story", button_style="primary")
    output = widgets.Output()

    def tell(_=None):
        with output:
            output.clear_output(wait=True)
            try:
                print(write_story(model, tokenizer, prompt_box.value, temperature.value,
                                  top_k.value, length.value))
            except ValueError as error:  # a prompt longer than the model's context
                print(f"no story: {error}")

    button.on_click(tell)
    panel = widgets.VBox([prompt_box, temperature, top_k, length, button, output])
    display(panel)
    tell()
    return panel
