"""Federated fine-tuning across organisations on Flower (`openparity federated`).

Members fine-tune LoRA adapters of one shared base model on private data (ClientApp); the
coordinator aggregates them with FedAvg, FedProx or FedAdam and measures the global model
after each round (ServerApp). The same apps run in Flower's simulation engine and in a
deployment of a SuperLink and SuperNodes.
"""
