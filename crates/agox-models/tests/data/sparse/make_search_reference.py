"""High-precision log-likelihoods for the θ of `sparse_search.json`.

AGOX's `SparseGPR._log_marginal_likelihood` forms the dense matrix
K̃ = K_nm (K_mm + unc_jitter·I)⁻¹ K_nmᵀ + diag(σ²·n_centres) and solves it in
float64 by QR. This script evaluates the same definition with 80-digit decimal
arithmetic (Gauss–Jordan inverse of K_mm + unc_jitter·I, Cholesky of K̃), from
kernel entries computed in float64 from the features of `sparse_global.json`
(fixture A: one centre per structure, so L = I). It is the reference for the
pooled search (`pooled`, σ = 0.2) and for the θ of AGOX's +inf case
(`inf_case`, σ = 1e-6), where AGOX's float64 values are not usable.

Run by hand with numpy (any recent version); writes `search_reference.json`
beside this script in about ten seconds:

    python crates/agox-models/tests/data/sparse/make_search_reference.py
"""

import json
import math
import os
from decimal import Decimal, getcontext

import numpy as np

getcontext().prec = 80
HERE = os.path.dirname(os.path.abspath(__file__))


def kernel(a, b, theta):
    c, length = np.exp(theta)
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return c * np.exp(-d / (2 * length * length))


def dec(x):
    return Decimal(float(x))


def neg_lml(knm, kmm, y, variances, unc_jitter):
    m, n = kmm.shape[0], len(y)
    aug = [
        [dec(kmm[i, j]) + (dec(unc_jitter) if i == j else Decimal(0)) for j in range(m)]
        + [Decimal(int(i == j)) for j in range(m)]
        for i in range(m)
    ]
    for col in range(m):
        pivot = max(range(col, m), key=lambda r: abs(aug[r][col]))
        aug[col], aug[pivot] = aug[pivot], aug[col]
        p = aug[col][col]
        aug[col] = [x / p for x in aug[col]]
        for r in range(m):
            if r != col and aug[r][col] != 0:
                f = aug[r][col]
                aug[r] = [a - f * b for a, b in zip(aug[r], aug[col])]
    kinv = [row[m:] for row in aug]
    u = [[dec(knm[i, j]) for j in range(m)] for i in range(n)]
    uk = [[sum(u[i][a] * kinv[a][b] for a in range(m)) for b in range(m)] for i in range(n)]
    kt = [
        [sum(uk[i][b] * u[j][b] for b in range(m)) + (dec(variances[i]) if i == j else Decimal(0)) for j in range(n)]
        for i in range(n)
    ]
    chol = [[Decimal(0)] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            s = kt[i][j] - sum(chol[i][q] * chol[j][q] for q in range(j))
            if i == j:
                if s <= 0:
                    raise ValueError("K̃ is not positive definite in 80 digits")
                chol[i][i] = s.sqrt()
            else:
                chol[i][j] = s / chol[j][j]
    z = []
    for i in range(n):
        z.append((dec(y[i]) - sum(chol[i][q] * z[q] for q in range(i))) / chol[i][i])
    fit = sum(v * v for v in z)
    log_det = 2 * sum(chol[i][i].ln() for i in range(n))
    two_pi = Decimal(2) * Decimal("3.14159265358979323846264338327950288419716939937510582097494459")
    return fit / 2 + log_det / 2 + Decimal(n) / 2 * two_pi.ln()


def main():
    with open(os.path.join(HERE, "sparse_global.json")) as f:
        a = json.load(f)
    with open(os.path.join(HERE, "sparse_search.json")) as f:
        search = json.load(f)
    x = np.array(a["features"])
    xm = x[a["inducing_indices"]]
    y = np.array(a["Y"])
    unc_jitter = a["settings"]["unc_jitter"]
    out = {
        "meta": {
            "generated_by": "make_search_reference.py",
            "numpy": np.__version__,
            "digits": getcontext().prec,
            "what": "−log P of AGOX's dense definition, 80-digit decimal arithmetic, "
            "kernel entries from float64 numpy on sparse_global.json's features",
        }
    }
    for case, sigma in [("pooled", a["settings"]["sigma_E"]), ("inf_case", search["inf_case"]["sigma_E"])]:
        variances = np.full(len(y), sigma**2)
        values = []
        for theta in search[case]["theta_starts"]:
            t = np.array(theta)
            v = neg_lml(kernel(x, xm, t), kernel(xm, xm, t), y, variances, unc_jitter)
            values.append({"theta": theta, "neg_lml": float(v), "neg_lml_digits": str(v)})
        out[case] = {"sigma_E": sigma, "values": values}
    with open(os.path.join(HERE, "search_reference.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    assert math.isclose(float(Decimal(1).exp()), math.e)
    main()
