"""Verification: the stochastic simulator (simulate), baseline controllers (baselines), statistics
(stats), the first-law balance (balance) and the safety shield (shield).
"""
