"""The training job Kindred replaces, rebuilt as the anchor of `./dev bench`.

The replaced service (a Python take-home, see data/pluralsight/README.md) trained like
this: read every CSV of the data folder with pandas, join the views with the course
tags, average `view_time_seconds` per (user, tag), pivot to a dense user x tag matrix,
subtract each user's mean, take scipy's truncated SVD with k=50, fit scikit-learn's
cosine nearest-neighbours model on the user factors, and pickle the model and its
metadata into a folder. This script does the same steps, written afresh, and prints
the wall time of each as one JSON object on stdout, so the bench can divide Kindred's
training time by it on the same data in the same run.

Usage: python replaced_pipeline.py DATA_DIR OUT_DIR
"""

import json
import os
import pickle
import sys
import time

import numpy as np
import pandas as pd
from scipy.sparse.linalg import svds
from sklearn.neighbors import NearestNeighbors


def main(data_dir, out_dir):
    times = {}
    start = last = time.perf_counter()

    def lap(name):
        nonlocal last
        now = time.perf_counter()
        times[name] = round(now - last, 4)
        last = now

    # Every CSV in the folder, as the replaced service read them.
    frames = {
        name[: -len(".csv")]: pd.read_csv(os.path.join(data_dir, name))
        for name in sorted(os.listdir(data_dir))
        if name.endswith(".csv")
    }
    lap("read")
    joined = frames["user_course_views"].merge(frames["course_tags"], on="course_id")
    means = joined.groupby(["user_handle", "course_tags"], as_index=False)[
        "view_time_seconds"
    ].mean()
    table = means.pivot(
        index="user_handle", columns="course_tags", values="view_time_seconds"
    ).fillna(0)
    matrix = table.values
    matrix = matrix - matrix.mean(axis=1).reshape(-1, 1)
    lap("matrix")
    users, _, _ = svds(matrix, k=50)
    lap("svd")
    knn = NearestNeighbors(n_neighbors=10, metric="cosine").fit(users)
    lap("index")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "knn.pkl"), "wb") as f:
        pickle.dump(knn, f)
    with open(os.path.join(out_dir, "metadata.pkl"), "wb") as f:
        pickle.dump(
            {
                "customer_list": table.index.tolist(),
                "customer_embeddings": users,
                "customer_summary": means,
            },
            f,
        )
    lap("write")
    times["total"] = round(time.perf_counter() - start, 4)
    times["users"] = int(matrix.shape[0])
    times["tags"] = int(matrix.shape[1])
    print(json.dumps(times))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
