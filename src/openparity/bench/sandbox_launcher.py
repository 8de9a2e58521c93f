"""Sandbox launcher: isolates itself, then becomes the untrusted program. Stdlib only.

Run as `python -I -S sandbox_launcher.py CONFIG_JSON` with the program on stdin, in a new
session. It is a fresh single-threaded process, so namespace and credential changes are safe
here (they are not in a threaded parent's fork). Steps, each fatal on failure (exit 97 with a
reason on stderr: never run the program half-isolated):

1. new network, mount and PID namespaces (plus a user namespace when not root);
2. fork: the child is PID 1 of the new PID namespace, so when it dies every process the
   program started dies with it; it also dies if this launcher is killed (PDEATHSIG). It forks
   the program and reports its end as an exit code (128 + signal when it was killed);
3. private mounts: fresh /proc, tmpfs over /tmp, /var/tmp, /dev/shm and the home directories
   (the work dir lives in the new /tmp); the Python installation bound back read-only;
   everything else read-only;
4. rlimits: CPU seconds, address space, file size, open files, processes, no core dumps;
5. drop to nobody (when root), no new privileges, scrubbed environment; exec the program.
"""

import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SETUP_FAILED = 97
NOBODY = 65534

libc = ctypes.CDLL(None, use_errno=True)


def fail(step):
    err = ctypes.get_errno()
    sys.stderr.write(f"sandbox: {step} failed: {os.strerror(err) if err else 'error'}\n")
    sys.stderr.flush()
    os._exit(SETUP_FAILED)


def call(step, result):
    if result != 0:
        fail(step)


def mount(source, target, fstype, flags, data=None):
    call(
        f"mount {target}",
        libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
    )


def write_file(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def isolate_filesystem(cfg):
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # Paths to keep visible under a hidden directory (the Python installation under /root):
    # hold them open now, bind them back after the tmpfs covers their parent.
    keep = {path: os.open(path, os.O_PATH) for path in cfg["bind"]}
    size = f"size={cfg['tmpfs_mb']}m,mode=1777"
    for path in cfg["hide"]:
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, size)
    for path, fd in keep.items():
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        os.close(fd)
    os.makedirs(cfg["workdir"], mode=0o777, exist_ok=True)
    os.chmod(cfg["workdir"], 0o777)
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def set_limits(cfg):
    mb = 1024 * 1024
    limits = [
        (resource.RLIMIT_CPU, cfg["cpu_s"]),
        (resource.RLIMIT_AS, cfg["memory_mb"] * mb),
        (resource.RLIMIT_FSIZE, cfg["file_mb"] * mb),
        (resource.RLIMIT_NOFILE, cfg["open_files"]),
        (resource.RLIMIT_NPROC, cfg["processes"]),
        (resource.RLIMIT_CORE, 0),
    ]
    for which, value in limits:
        # CPU: the soft limit sends SIGXCPU (reported as a timeout), the hard one SIGKILL
        hard = value + 1 if which == resource.RLIMIT_CPU else value
        resource.setrlimit(which, (value, hard))


def main():
    cfg = json.loads(sys.argv[1])
    program = sys.stdin.buffer.read()
    is_root = os.geteuid() == 0
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | (0 if is_root else CLONE_NEWUSER)
    call("unshare (namespaces)", libc.unshare(flags))
    if not is_root:
        write_file("/proc/self/setgroups", "deny")
        write_file("/proc/self/uid_map", f"{uid} {uid} 1")
        write_file("/proc/self/gid_map", f"{gid} {gid} 1")
    child = os.fork()
    if child:  # the launcher: wait for the namespace's init and pass its exit status on
        signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGKILL))
        _, status = os.waitpid(child, 0)
        os._exit(os.waitstatus_to_exitcode(status) % 256)
    # PID 1 of the namespace: set up the filesystem, then stay as a reaper. The program must
    # not be PID 1 itself: the kernel does not deliver SIGXCPU and friends to a namespace init.
    call("prctl(PDEATHSIG)", libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0))
    isolate_filesystem(cfg)
    program_pid = os.fork()
    if program_pid:
        while True:
            pid, status = os.wait()
            if pid == program_pid:
                os._exit(
                    128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                )
    run_program(cfg, program, is_root)


def run_program(cfg, program, is_root):
    os.chdir(cfg["workdir"])
    with open("main.py", "wb") as handle:
        handle.write(program)
    os.chmod("main.py", 0o444)
    set_limits(cfg)
    if is_root:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    call("prctl(PDEATHSIG)", libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0))
    call("prctl(NO_NEW_PRIVS)", libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": cfg["workdir"], "LANG": "C.UTF-8"}
    python = cfg["python"]
    os.execve(python, [python, "-I", "-B", "main.py"], env)


if __name__ == "__main__":
    try:
        main()
    except OSError as exc:
        sys.stderr.write(f"sandbox: setup failed: {exc}\n")
        os._exit(SETUP_FAILED)
