"""The fleet: the SQL store (store), client contracts (contracts), the regiment's scheduling (regiment)
and the run directory (rundir).
"""
