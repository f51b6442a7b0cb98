"""Trust: Ed25519 signing (signing), the signed proof (proof),
its replay (replay) and the signed capsule (capsule).
"""
