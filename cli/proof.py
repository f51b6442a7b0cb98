"""``industriverse proof verify PROOF [--optimization OPT] [--simulation SIM] [--replay]``.

Checks a proof's signature (Ed25519, key among the trusted keys of the data directory),
that ``inputs_sha256`` and ``plan_sha256`` match the optimization JSON, and that the
recorded optimizer figures are the file's.  The optimization JSON defaults to
``optimization.json`` beside the proof, else in its parent directory (a proof inside
``RUN/capsule/`` belongs to ``RUN/``).  ``simulation.json`` found the same way is
checked too.

``--replay`` re-runs optimization and simulation from the recorded inputs and seed
(:func:`industriverse.trust.replay.replay_proof`) and names every figure that differs.

Exit 0 valid, 1 invalid (one line per problem), 2 bad input.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python cli/proof.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import ArgumentParser, one_line_errors
from industriverse.model.canonical import read_json
from industriverse.errors import BadInput
from industriverse.trust.proof import verify_proof
from industriverse.model.canonical import document_beside





def verify(args) -> int:
    proof_path = Path(args.proof)
    proof = read_json(proof_path)
    if not isinstance(proof, dict):
        raise BadInput(str(proof_path), None, "a proof must be a JSON object")

    opt_path = Path(args.optimization) if args.optimization else document_beside(proof_path, "optimization.json")
    sim_path = Path(args.simulation) if args.simulation else document_beside(proof_path, "simulation.json")
    optimization = read_json(opt_path) if opt_path else None
    simulation = read_json(sim_path) if sim_path else None
    for path, doc in ((opt_path, optimization), (sim_path, simulation)):
        if path is not None and not isinstance(doc, dict):
            raise BadInput(str(path), None, "must be a JSON object")

    problems = verify_proof(proof, optimization=optimization, simulation=simulation)

    if args.replay:
        from industriverse.trust.replay import replay_proof

        problems += [f"replay: {p}" for p in replay_proof(proof_path)]

    if problems:
        for line in problems:
            print(line)
        return 1
    key_id = proof["signature"]["key_id"]
    checked = ["signature"]
    if optimization is not None:
        checked.append(f"inputs and plan hashes against {opt_path}")
    if simulation is not None:
        checked.append(f"simulation figures against {sim_path}")
    if args.replay:
        checked.append("replay")
    print(f"valid: proof of strike {proof.get('strike_id')} signed by {key_id}; checked {', '.join(checked)}")
    if optimization is None:
        print(f"note: hashes not checked, no optimization.json beside {proof_path} (pass --optimization)", file=sys.stderr)
    return 0


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = ArgumentParser(prog=prog, description="Verify signed strike proofs.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("verify", help="check a proof's signature and hashes (exit 0 valid, 1 invalid)")
    p.add_argument("proof", metavar="PROOF", help="proof.json")
    p.add_argument("--optimization", metavar="OPT", help="optimization JSON (default: optimization.json beside the proof or in its parent)")
    p.add_argument("--simulation", metavar="SIM", help="simulation JSON (default: simulation.json found like the optimization)")
    p.add_argument("--replay", action="store_true", help="re-run optimization and simulation and compare every figure")
    args = parser.parse_args(argv)
    return verify(args)


if __name__ == "__main__":
    sys.exit(main())
