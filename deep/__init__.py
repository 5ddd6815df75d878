"""Long-tailed ResNet training that measures neural collapse as it trains.

The empirical side of nc-verify (DESIGN.md, section 6): a fixed simplex-ETF classifier with the
dot-regression loss (Yang et al., NeurIPS 2022) against a learnable linear classifier with
cross-entropy, on long-tailed CIFAR-10/100, Fashion-MNIST and image folders. The ETF, the
losses and the NC metrics come from `ufm`; this package holds the data, the networks and the
training loop. Every variant (dataset, backbone, head, objective) is registered by name:

    python -m deep.train --dataset cifar10 --imbalance 100 --head etf --loss dr

The methods of the long-tail literature (logit adjustment, balanced softmax, LDAM-DRW, the NC
regularizers of Liu et al., AllNC) are registered objectives too; `deep.methods` names them and
`python -m deep.table` runs every dataset x imbalance x method x seed and tabulates the results.
"""
