"""PETSc / hypre PCG on systems written by benchmarks/anchor.py (a standalone script).

Runs under Debian's system python with petsc4py (not the project's environment), one
process per configuration for a whole list of systems, so PETSc's start-up is paid once
(and reported): for 2 ranks ``mpiexec -n 2 /usr/bin/python3 benchmarks/petsc_solve.py``.

The manifest (JSON, written by anchor.py) lists the systems: for each a PETSc binary
matrix file, a PETSc binary vector file with the right-hand side, and a ``.npy`` path
(``{repeat}`` in it is replaced by the repeat's number) where each solution is written,
gathered on rank 0, for the caller's own residual check.

Every system gets a fresh KSP (setup paid per system, as for every method of the anchor
benchmark): CG with the unpreconditioned residual norm, so the stopping test is
``||r_k|| <= rtol ||b||`` on CG's recurrence residual, then the TRUE residual
``||b - A x||`` of the returned ``x`` is recomputed here in float64 with PETSc's MatMult.
Setup (KSPSetUp and KSPSetUpOnBlocks: the AMG hierarchy or the factorization) and solve
are timed separately
between MPI barriers. Warm-up (the manifest's ``warmup``): an untimed solve of the first system only
(``"first"``, for a sequence), of every system (``"each"``, for a suite), or none.

Methods: ``gamg`` (PETSc smoothed aggregation, defaults, the matrix flagged SPD),
``hypre`` (hypre BoomerAMG with PETSc's defaults), ``ic`` (IC(0): block Jacobi with ICC(0)
on each rank's block; on one rank that is plain IC(0)).

    PETSC_DIR=/usr/lib/petscdir/petsc3.18/x86_64-linux-gnu-real \\
        /usr/bin/python3 benchmarks/petsc_solve.py manifest.json --method gamg --out r.json
"""

import argparse
import json
import os
import platform
import sys
import time

T_START = time.perf_counter()

METHODS = ("gamg", "hypre", "ic")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifest", help="JSON written by anchor.py")
    p.add_argument("--method", choices=METHODS, required=True)
    p.add_argument("--out", required=True, help="JSON results (written by rank 0)")
    return p.parse_known_args(argv)[0]  # PETSc's own -options pass through


def configure(ksp, A, method, rtol, maxiter):
    """CG with the method's preconditioner and the true-residual-norm stopping test."""
    from petsc4py import PETSc

    ksp.setOperators(A)
    ksp.setType(PETSc.KSP.Type.CG)
    ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
    ksp.setTolerances(rtol=rtol, atol=0.0, max_it=maxiter)
    ksp.setInitialGuessNonzero(False)
    pc = ksp.getPC()
    opts = PETSc.Options()
    if method == "gamg":
        pc.setType(PETSc.PC.Type.GAMG)
    elif method == "hypre":
        pc.setType(PETSc.PC.Type.HYPRE)
        pc.setHYPREType("boomeramg")
    else:
        pc.setType(PETSc.PC.Type.BJACOBI)
        opts["sub_pc_type"] = "icc"
        opts["sub_pc_factor_levels"] = 0
    ksp.setFromOptions()


def load_system(comm, item):
    from petsc4py import PETSc

    viewer = PETSc.Viewer().createBinary(item["A"], "r", comm=comm)
    A = PETSc.Mat().create(comm=comm)
    A.setType(PETSc.Mat.Type.AIJ)
    A.load(viewer)
    viewer.destroy()
    A.setOption(PETSc.Mat.Option.SPD, True)
    viewer = PETSc.Viewer().createBinary(item["b"], "r", comm=comm)
    b = A.createVecLeft()
    b.load(viewer)
    viewer.destroy()
    return A, b


def solve_one(comm, A, b, method, rtol, maxiter):
    """One fresh KSP: returns (x, setup seconds, solve seconds, ksp)."""
    from petsc4py import PETSc

    x = A.createVecRight()
    comm.barrier()
    t0 = time.perf_counter()
    ksp = PETSc.KSP().create(comm=comm)
    configure(ksp, A, method, rtol, maxiter)
    ksp.setUp()
    ksp.setUpOnBlocks()  # block Jacobi factors its blocks here, not in KSPSetUp
    comm.barrier()
    t1 = time.perf_counter()
    ksp.solve(b, x)
    comm.barrier()
    t2 = time.perf_counter()
    return x, t1 - t0, t2 - t1, ksp


def true_residual(A, b, x):
    r = b.duplicate()
    A.mult(x, r)
    r.aypx(-1.0, b)  # r = b - A x
    bnorm = b.norm()
    return r.norm() / bnorm if bnorm > 0 else r.norm()


def save_solution(x, path):
    """Gather ``x`` on rank 0 and write it as .npy (float64)."""
    import numpy as np
    from petsc4py import PETSc

    scatter, x0 = PETSc.Scatter.toZero(x)
    scatter.scatter(x, x0, addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
    if x.getComm().getRank() == 0:
        tmp = path + ".tmp.npy"
        np.save(tmp, np.asarray(x0.getArray(), dtype=np.float64))
        os.replace(tmp, path)
    scatter.destroy()
    x0.destroy()


def run_item(comm, item, method, rtol, maxiter, *, warmup, repeat):
    t0 = time.perf_counter()
    A, b = load_system(comm, item)
    load = time.perf_counter() - t0
    if warmup:
        x, *_, ksp = solve_one(comm, A, b, method, rtol, maxiter)
        ksp.destroy()
        x.destroy()
    runs = []
    for k in range(repeat):
        x, setup, solve, ksp = solve_one(comm, A, b, method, rtol, maxiter)
        runs.append(
            {
                "setup_seconds": setup,
                "solve_seconds": solve,
                "iterations": ksp.getIterationNumber(),
                "reason": int(ksp.getConvergedReason()),
                "ksp_residual_norm": ksp.getResidualNorm(),
            }
        )
        runs[-1]["true_residual"] = true_residual(A, b, x)
        runs[-1]["x"] = item["x"].format(repeat=k)
        save_solution(x, runs[-1]["x"])
        runs[-1]["pc_description"] = describe(ksp)
        ksp.destroy()
        x.destroy()
    rows, _ = A.getSize()
    A.destroy()
    b.destroy()
    return {"name": item["name"], "n": rows, "load_seconds": load, "repeats": runs}


def describe(ksp):
    pc = ksp.getPC()
    text = f"KSP {ksp.getType()}, PC {pc.getType()}"
    if pc.getType() == "hypre":
        text += f" ({pc.getHYPREType()})"
    return text


def main(argv=None):
    args = parse_args(argv)
    t_import = time.perf_counter()
    import numpy as np
    import petsc4py

    petsc4py.init(sys.argv[:1])
    from petsc4py import PETSc

    comm = PETSc.COMM_WORLD
    ready = time.perf_counter()
    with open(args.manifest) as f:
        manifest = json.load(f)
    rtol, maxiter = float(manifest["rtol"]), int(manifest.get("maxiter", 10000))
    repeat = int(manifest.get("repeat", 1))
    results = []
    for k, item in enumerate(manifest["items"]):
        mode = manifest.get("warmup", "first")  # "first", "each" or "none"
        warmup = mode == "each" or (mode == "first" and k == 0)
        results.append(
            run_item(comm, item, args.method, rtol, maxiter, warmup=warmup, repeat=repeat)
        )
        if comm.getRank() == 0:
            last = results[-1]["repeats"][-1]
            print(
                f"{args.method} np{comm.getSize()} {item['name']}: {last['iterations']} it, "
                f"setup {last['setup_seconds']:.3g} s, solve {last['solve_seconds']:.3g} s, "
                f"true residual {last['true_residual']:.2e}",
                flush=True,
            )
    if comm.getRank() == 0:
        payload = {
            "method": args.method,
            "ranks": comm.getSize(),
            "petsc_version": ".".join(map(str, PETSc.Sys.getVersion())),
            "petsc4py_version": petsc4py.__version__,
            "python": platform.python_version(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
            "index_bytes": int(np.dtype(PETSc.IntType).itemsize),
            "import_and_init_seconds": ready - t_import,
            "rtol": rtol,
            "maxiter": maxiter,
            "items": results,
            "script_seconds": time.perf_counter() - T_START,
        }
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=1)
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
