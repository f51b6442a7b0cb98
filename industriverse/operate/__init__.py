"""Operation: the capsule gateway (gateway), the runtime monitor (monitor) and the digital twin (twin).
"""
