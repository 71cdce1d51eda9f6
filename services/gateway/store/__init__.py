"""The gateway's documents, one module per collection family: what each looks like and the commands that write it.

Task queues and leases are in services/gateway/queue.py; per-item progress in services/gateway/store/progress.py.
"""
