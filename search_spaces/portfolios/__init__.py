"""Portfolios of the learned start, one per shipped space (autopeft.space.portfolio reads them)."""
