"""Stage 4, the search engine: the ask/run/tell loop (the only module that knows both sampler and executor), the
sampler factory, executors, and what failures rule out.
"""
