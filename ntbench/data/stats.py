"""Dataset statistics like the paper's Figure A.7: caption length, QA length, objects per sample."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ntbench.data.io import read_split


def split_statistics(root: str | Path, split: str) -> pd.DataFrame:
    """One row per sample: caption words, question+answer words, objects, tagged objects."""
    rows = [{"split": split, "caption_words": len(s.caption.split()),
             "qa_words": len(s.question.split()) + len(s.answer.split()),
             "objects": len(s.objects), "answer_objects": len(s.tags()), "template": s.template}
            for s in read_split(root, split, check_images=False)]
    return pd.DataFrame(rows)


def plot_statistics(df: pd.DataFrame, out: str | Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, col, title in zip(axes, ("caption_words", "qa_words", "objects"),
                              ("caption length (words)", "question + answer length (words)", "objects per sample")):
        sns.histplot(df, x=col, hue="split", discrete=True, stat="percent", common_norm=False, ax=ax,
                     element="step")
        ax.set_title(title)
        ax.set_xlabel("")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
