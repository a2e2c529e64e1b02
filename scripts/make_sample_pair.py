"""Write the demo model's sample pair (mask + synthetic image) beside its
weights, so that File > Open Sample > Synthetic pair opens at once.

Run after retraining the demo: ``python scripts/make_sample_pair.py``.
"""

from napari_histodiff._sample_data import write_shipped_pair
from napari_histodiff.models import resolve_model_path

if __name__ == "__main__":
    print(write_shipped_pair(resolve_model_path("demo")))
