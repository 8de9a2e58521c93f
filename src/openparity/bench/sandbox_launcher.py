"""Sandbox launcher: isolates itself, then becomes the untrusted program. Stdlib only.

Run as `python -I -S sandbox_launcher.py CONFIG_JSON` with the run's secret nonce (one line)
and then the program on stdin, in a new session. It is a fresh single-threaded process, so
namespace and credential changes are safe here (they are not in a threaded parent's fork).
Steps, each fatal on failure (never run the program half-isolated). Setup is reported on the
status pipe (`status_fd`): a failure's reason, or `ready` just before the program starts; the
pipe is closed on exec, so the program cannot write to it (nor fake a setup failure by
printing the launcher's text and exiting with its code). In `program` mode the program runs
under `sandbox_runner.py`, which writes the nonce to its result pipe only when main.py ran to
its end; in `callee` mode main.py is the answer alone, loaded by `sandbox_callee.py`, which
answers a judge's calls on two pipes (the judge, outside, holds the tests and the verdict):

0. join the run's cgroups (memory and process limits for the whole tree), when given;
1. new network, mount, PID and IPC namespaces (plus a user namespace when not root): no SysV
   shared memory, semaphores or message queues of the host or of another run;
2. fork: the child is PID 1 of the new PID namespace, so when it dies every process the
   program started dies with it; it also dies if this launcher is killed (PDEATHSIG). It forks
   the program and reports its end as an exit code (128 + signal when it was killed);
3. a new root (pivot_root) holding only the system and Python directories, bound read-only
   recursively, a fresh /proc, the null/zero/random devices, and private tmpfs /tmp (the work
   dir) and /dev/shm: no home, no temp dir, no /run or /var (no host Unix sockets), no
   writable submount;
4. rlimits: CPU seconds, address space, file size, open files, no core dumps, and processes
   (per user, so only where no pids cgroup bounds the tree);
5. an empty session keyring, drop to nobody (when root), no new privileges, the seccomp filter
   (`sandbox_seccomp.py`: no keyrings, ptrace, namespaces, mounts, bpf, vsock or netlink...),
   scrubbed environment; exec the runner.
"""

import ctypes
import json
import os
import re
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
CLONE_NEWIPC = 0x08000000
KEYCTL_JOIN_SESSION_KEYRING = 1
SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine, 250)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 2, -100, 0x8000, 1
ENOSYS = 38
SYS_MOUNT_SETATTR = 442  # the same on x86-64 and arm64
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, 155)
SETUP_FAILED = 97
NOBODY = 65534

libc = ctypes.CDLL(None, use_errno=True)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sandbox_seccomp  # noqa: E402 - a sibling file; -I leaves the script's folder off sys.path

STATUS_FD = None  # the status pipe, set from the config in main()
HERE = os.path.dirname(os.path.abspath(__file__))
# what each mode copies into the work dir beside main.py: the program's runner (runner.py)
# and the files it imports
MODE_FILES = {
    "program": {"runner.py": "sandbox_runner.py"},
    "callee": {"runner.py": "sandbox_callee.py", "plain_data.py": "plain_data.py"},
}


def report(text):
    if STATUS_FD is not None:
        os.write(STATUS_FD, text.encode() + b"\n")


def fail(step, reason=None):
    err = ctypes.get_errno()
    reason = reason or (os.strerror(err) if err else "error")
    message = f"sandbox: {step} failed: {reason}"
    report(message)
    sys.stderr.write(message + "\n")
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


class MountAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("set", "clear", "propagation", "userns")]


def read_only_tree(path, legacy=False):
    """Make the mount at `path` and every mount below it read-only: mount_setattr (Linux 5.12),
    else (ENOSYS, or `legacy`) one read-only remount per mount from /proc/self/mountinfo."""
    if not legacy:
        attr = MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
        result = libc.syscall(
            ctypes.c_long(SYS_MOUNT_SETATTR),
            ctypes.c_int(AT_FDCWD),
            path.encode(),
            ctypes.c_uint(AT_RECURSIVE),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        )
        if result == 0 or ctypes.get_errno() != ENOSYS:
            call(f"read-only {path}", result)
            return
    for target, flags in mounts_under(path):
        # keep the flags a user namespace locks (nosuid, nodev, noexec, atime): only add ro
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)


def mounts_under(path):
    """(mount point, its nosuid/nodev/noexec/atime flags) for `path` and every mount below."""
    flag_of = {
        "nosuid": MS_NOSUID,
        "nodev": MS_NODEV,
        "noexec": MS_NOEXEC,
        "noatime": MS_NOATIME,
        "nodiratime": MS_NODIRATIME,
        "relatime": MS_RELATIME,
    }
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            target = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])  # \040
            if target == path or target.startswith(path.rstrip("/") + "/"):
                flags = sum(flag_of.get(option, 0) for option in fields[5].split(","))
                found.append((target, flags))
    return found


def expose(new_root, path, legacy=False):
    """Bind host `path` (a directory, or a symlink such as /lib -> usr/lib) into the new root,
    read-only all the way down."""
    target = new_root + path
    if os.path.islink(path):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(os.readlink(path), target)
        return
    os.makedirs(target, exist_ok=True)
    mount(path, target, None, MS_BIND | MS_REC)
    read_only_tree(target, legacy)


def isolate_filesystem(cfg):
    """A new root holding only what Python needs, read-only (no host sockets, homes, temp
    dirs or writable submounts), plus a fresh /proc, a few devices and private tmpfs dirs."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    new_root = "/tmp"  # a private tmpfs over the host's /tmp becomes the new root
    mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for path in cfg["expose"]:
        if os.path.lexists(path):
            expose(new_root, path, cfg.get("legacy_remount", False))
    os.makedirs(new_root + "/dev", exist_ok=True)
    for name in ("null", "zero", "full", "random", "urandom"):
        node = new_root + "/dev/" + name
        open(node, "w").close()
        mount("/dev/" + name, node, None, MS_BIND)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{new_root}/dev/{name}")
    size = f"size={cfg['tmpfs_mb']}m,mode=1777"
    for path in ("/tmp", "/dev/shm"):
        os.makedirs(new_root + path, exist_ok=True)
        mount("tmpfs", new_root + path, "tmpfs", MS_NOSUID | MS_NODEV, size)
    os.makedirs(new_root + "/proc", exist_ok=True)
    mount("proc", new_root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chdir(new_root)
    call("pivot_root", libc.syscall(ctypes.c_long(SYS_PIVOT_ROOT), b".", b"."))
    call("detach the old root", libc.umount2(b".", MNT_DETACH))
    os.chdir("/")
    os.makedirs(cfg["workdir"], mode=0o1777, exist_ok=True)
    os.chmod(cfg["workdir"], 0o1777)  # sticky: the program cannot replace the runner's files
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def set_limits(cfg):
    mb = 1024 * 1024
    limits = [
        (resource.RLIMIT_CPU, cfg["cpu_s"]),
        (resource.RLIMIT_AS, cfg["memory_mb"] * mb),
        (resource.RLIMIT_FSIZE, cfg["file_mb"] * mb),
        (resource.RLIMIT_NOFILE, cfg["open_files"]),
        (resource.RLIMIT_CORE, 0),
    ]
    if cfg["nproc_rlimit"]:
        limits.append((resource.RLIMIT_NPROC, cfg["processes"]))
    for which, value in limits:
        # CPU: the soft limit sends SIGXCPU (reported as a timeout), the hard one SIGKILL
        hard = value + 1 if which == resource.RLIMIT_CPU else value
        resource.setrlimit(which, (value, hard))


def main():
    global STATUS_FD
    cfg = json.loads(sys.argv[1])
    STATUS_FD = cfg["status_fd"]
    os.set_inheritable(STATUS_FD, False)  # closed when the program is exec'd
    nonce = bytearray(sys.stdin.buffer.readline().strip())
    program = sys.stdin.buffer.read()
    support = {}
    for name, source in MODE_FILES[cfg["mode"]].items():
        with open(os.path.join(HERE, source), "rb") as handle:
            support[name] = handle.read()
    program_fds = cfg["program_fds"]  # the result pipe, or the callee's request and reply pipes
    for procs in cfg["cgroup_procs"]:  # the whole tree shares the memory and pids limits
        try:
            write_file(procs, str(os.getpid()))
        except OSError as exc:
            fail("join the cgroup", str(exc))
    is_root = os.geteuid() == 0
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC
    flags |= 0 if is_root else CLONE_NEWUSER
    call("unshare (namespaces)", libc.unshare(flags))
    if not is_root:
        write_file("/proc/self/setgroups", "deny")
        write_file("/proc/self/uid_map", f"{uid} {uid} 1")
        write_file("/proc/self/gid_map", f"{gid} {gid} 1")
    call("prctl(DUMPABLE)", libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0))  # no /proc/PID/fd access
    child = os.fork()
    if child:  # the launcher: wait for the namespace's init and pass its exit status on
        nonce[:] = bytes(len(nonce))
        close_all(STATUS_FD, *program_fds)
        signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGKILL))
        _, status = os.waitpid(child, 0)
        os._exit(os.waitstatus_to_exitcode(status) % 256)
    # PID 1 of the namespace: set up the filesystem, then stay as a reaper. The program must
    # not be PID 1 itself: the kernel does not deliver SIGXCPU and friends to a namespace init.
    call("prctl(PDEATHSIG)", libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0))
    isolate_filesystem(cfg)
    program_pid = os.fork()
    if program_pid:
        nonce[:] = bytes(len(nonce))
        close_all(STATUS_FD, *program_fds)  # the judge sees EOF as soon as the program ends
        while True:
            pid, status = os.wait()
            if pid == program_pid:
                os._exit(
                    128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                )
    run_program(cfg, support, program, nonce, is_root)


def close_all(*fds):
    for fd in fds:
        os.close(fd)


def run_program(cfg, support, program, nonce, is_root):
    os.chdir(cfg["workdir"])
    for name, text in (*support.items(), ("main.py", program)):
        with open(name, "wb") as handle:
            handle.write(text)
        os.chmod(name, 0o444)
    args = [str(fd) for fd in cfg["program_fds"]]
    if cfg["mode"] == "program":  # the runner proves the end with the nonce, read from a pipe
        nonce_read, nonce_write = os.pipe()
        os.write(nonce_write, bytes(nonce))
        os.close(nonce_write)
        os.set_inheritable(nonce_read, True)
        args.insert(0, str(nonce_read))
    nonce[:] = bytes(len(nonce))
    for fd in cfg["program_fds"]:
        os.set_inheritable(fd, True)
    # an empty session keyring of its own, in case keyctl is reachable some other way (the
    # seccomp filter refuses it); ENOSYS: a kernel without keys has nothing to hide
    joined = libc.syscall(ctypes.c_long(SYS_KEYCTL), KEYCTL_JOIN_SESSION_KEYRING, None)
    if joined < 0 and ctypes.get_errno() != ENOSYS:
        fail("new session keyring")
    set_limits(cfg)
    if is_root:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    call("prctl(PDEATHSIG)", libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0))
    call("prctl(NO_NEW_PRIVS)", libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
    refused = sandbox_seccomp.install(libc)
    if refused:
        fail("seccomp filter", os.strerror(refused))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": cfg["workdir"], "LANG": "C.UTF-8"}
    python = cfg["python"]
    report("ready")
    argv = [python, "-I", "-B", "runner.py", *args]
    os.execve(python, argv, env)


if __name__ == "__main__":
    try:
        main()
    except OSError as exc:
        fail("setup", str(exc))
