"""kubemu.ingress: the ingress controller (`kubemu ingress-controller`)."""
