"""Next-item models: each user's history is an ordered sequence (`recotorch.data.sequences`).

- `transitions`: "bought X, then Y" counts from consecutive pairs (fast baseline);
- `knn_last`: item-kNN cosine summed over the last few items (fast baseline);
- `gru4rec`: a recurrent network (GRU or LSTM cells) trained on next-item prediction;
- `sasrec`: causal self-attention, full-softmax cross-entropy or sampled / gSASRec negatives.

Every one stores each known user's sequence with the model, so `recommend` scores from it, and
`recommend_history` (the fold-in capability) answers an anonymous ordered history without retraining.
"""

from recotorch.models.sequential.base import SequenceModel
from recotorch.models.sequential.counts import KNNLast, Transitions
from recotorch.models.sequential.neural import GRU4Rec, SASRec

__all__ = ["GRU4Rec", "KNNLast", "SASRec", "SequenceModel", "Transitions"]
