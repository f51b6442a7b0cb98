"""Planning: site power models and the COP relaxation (power), the planning LP with its proven dual bound
(lp), the energy-based diffusion optimizer IDF (idf), infeasibility explanations (infeasibility), the
``optimize`` entry point (optimize) and the tracking law that executes a plan (tracking).
"""
