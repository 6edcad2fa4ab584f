"""Pure, tested functions behind Huaxiang's Python assets (identity, RFM, lifecycle, clustering, CLV, ...)."""
