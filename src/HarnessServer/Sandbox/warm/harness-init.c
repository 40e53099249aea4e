/*
 * harness-init: pid 1 of a session's warm sandbox (see Sandbox/WarmSandbox.cs and docs/sandbox.md).
 *
 * bubblewrap builds the sandbox once per session and execs this program with CAP_SYS_ADMIN and CAP_SETPCAP in the
 * sandbox's own user namespace (nothing on the host). Its stdin and stdout are the only control channel: frames of
 * one type byte, a little-endian u32 length and the payload. There is no socket or path inside the sandbox, so a
 * sandboxed process cannot reach it.
 *
 *   server -> init   'S' the seccomp program (struct sock_filter[]), once, first
 *                    'R' run: u32 cpu seconds, u64 address space, u64 processes, u64 file size, u64 /tmp bytes,
 *                        u64 /dev/shm bytes (0: none), u32 argc, argv strings, u32 envc, env strings (each NUL-ended)
 *                    'K' kill the running command
 *   init -> server   'A' the command was exec'd, then 'O' / 'E' stdout / stderr bytes, 'X' u32 wait status;
 *                    or 'F' setup failed (text; nothing ran)
 *
 * Per command it clones a child in fresh mount, PID and IPC namespaces: the command is pid 1 of its own PID namespace,
 * so killing it (or its exiting) takes everything it started with it. The child mounts a fresh size-capped /tmp (and
 * /dev/shm) and a /proc of its own PID namespace (with bubblewrap's read-only covers), drops every capability (bounding set included) under PR_SET_NO_NEW_PRIVS, sets the rlimits, loads the
 * seccomp filter and execs. One command at a time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_FRAME (8u * 1024 * 1024)
#define CHILD_STACK (256 * 1024)

static struct sock_fprog seccomp_program;

struct request {
    uint32_t cpu;
    uint64_t address_space, processes, file_size, tmp_bytes, shm_bytes;
    char **argv;
    char **envp;
    int error_pipe;
};

static void die(const char *what)
{
    dprintf(2, "harness-init: %s: %s\n", what, strerror(errno));
    _exit(126);
}

static int read_full(int fd, void *buffer, size_t length)
{
    char *at = buffer;
    while (length > 0) {
        ssize_t n = read(fd, at, length);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        at += n;
        length -= (size_t)n;
    }
    return 0;
}

static void write_full(int fd, const void *buffer, size_t length)
{
    const char *at = buffer;
    while (length > 0) {
        ssize_t n = write(fd, at, length);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(0); /* The server is gone: nothing is left to report to. */
        at += n;
        length -= (size_t)n;
    }
}

static void send_frame(char type, const void *payload, uint32_t length)
{
    char header[5];
    header[0] = type;
    memcpy(header + 1, &length, 4);
    write_full(1, header, 5);
    write_full(1, payload, length);
}

/* Reads one frame; returns its type, or 0 at the end of the channel. */
static char read_frame(char **payload, uint32_t *length)
{
    char header[5];
    if (read_full(0, header, 5) < 0)
        return 0;
    memcpy(length, header + 1, 4);
    if (*length > MAX_FRAME)
        return 0;
    *payload = malloc(*length + 1);
    if (*payload == NULL || read_full(0, *payload, *length) < 0)
        return 0;
    (*payload)[*length] = 0;
    return header[0];
}

struct cursor {
    char *at, *end;
    int broken;
};

static void take(struct cursor *c, void *into, size_t size)
{
    if ((size_t)(c->end - c->at) < size) {
        c->broken = 1;
        memset(into, 0, size);
        return;
    }
    memcpy(into, c->at, size);
    c->at += size;
}

static char **take_strings(struct cursor *c)
{
    uint32_t count = 0;
    take(c, &count, 4);
    if (c->broken || count > 1u << 20)
        return c->broken = 1, NULL;
    char **list = calloc(count + 1, sizeof(char *));
    for (uint32_t i = 0; list != NULL && i < count; i++) {
        char *nul = memchr(c->at, 0, (size_t)(c->end - c->at));
        if (nul == NULL)
            return c->broken = 1, NULL;
        list[i] = c->at;
        c->at = nul + 1;
    }
    return list;
}

static void fail_setup(int pipe, const char *what)
{
    char text[256];
    int n = snprintf(text, sizeof text, "%s: %s", what, strerror(errno));
    if (write(pipe, text, (size_t)n) < 0)
        _exit(125);
    _exit(125);
}

static void set_limit(int pipe, int resource, uint64_t value)
{
    struct rlimit limit = { value, value };
    if (setrlimit(resource, &limit) != 0)
        fail_setup(pipe, "setrlimit");
}

/* bubblewrap's covers over the parts of /proc that reach the kernel: read-only binds of themselves. */
static void cover_proc(int pipe)
{
    static const char *const covers[] = { "/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus" };
    for (size_t i = 0; i < sizeof covers / sizeof covers[0]; i++) {
        if (access(covers[i], F_OK) != 0)
            continue;
        if (mount(covers[i], covers[i], NULL, MS_BIND | MS_REC, NULL) != 0
            || mount(NULL, covers[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
            fail_setup(pipe, covers[i]);
    }
}

static void mount_tmpfs(int pipe, const char *where, uint64_t bytes, const char *mode)
{
    char data[96];
    snprintf(data, sizeof data, "size=%llu,mode=%s", (unsigned long long)bytes, mode);
    if (mount("tmpfs", where, "tmpfs", MS_NOSUID | MS_NODEV, data) != 0)
        fail_setup(pipe, where);
}

/* The command's pid 1: a fresh /tmp, no capabilities, the limits and the filter, then exec. */
static int command_main(void *argument)
{
    struct request *r = argument;
    int pipe = r->error_pipe;

    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        fail_setup(pipe, "make mounts private");
    mount_tmpfs(pipe, "/tmp", r->tmp_bytes, "0755");
    if (r->shm_bytes > 0)
        mount_tmpfs(pipe, "/dev/shm", r->shm_bytes, "1777");
    /* Mounted by this process, pid 1 of the new namespace: it shows the command's processes only. */
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
        fail_setup(pipe, "/proc");
    cover_proc(pipe);
    if (setsid() < 0)
        fail_setup(pipe, "setsid");
    if (chdir("/workspace") != 0)
        fail_setup(pipe, "chdir /workspace");

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        fail_setup(pipe, "no_new_privs");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
        fail_setup(pipe, "clear ambient capabilities");
    for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
            fail_setup(pipe, "drop the bounding set");
    }
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct none[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
    if (syscall(SYS_capset, &header, none) != 0)
        fail_setup(pipe, "capset");

    set_limit(pipe, RLIMIT_CPU, r->cpu);
    set_limit(pipe, RLIMIT_AS, r->address_space);
    set_limit(pipe, RLIMIT_NPROC, r->processes);
    set_limit(pipe, RLIMIT_FSIZE, r->file_size);
    set_limit(pipe, RLIMIT_CORE, 0);

    /* Nothing of the init's but stdout and stderr (now the command's pipes) survives the exec. */
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
        fail_setup(pipe, "close_range");
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0)
        fail_setup(pipe, "stdin");
    sigset_t none_blocked;
    sigemptyset(&none_blocked);
    sigprocmask(SIG_SETMASK, &none_blocked, NULL);
    signal(SIGPIPE, SIG_DFL);

    if (seccomp_program.len > 0 && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &seccomp_program, 0, 0) != 0)
        fail_setup(pipe, "seccomp");
    environ = r->envp;
    execvp(r->argv[0], r->argv);
    /* As bwrap reports a program it cannot run: on stderr, exit 127 (the shell's "not found"). */
    dprintf(2, "harness-init: execvp %s: %s\n", r->argv[0], strerror(errno));
    _exit(127);
}

static void forward(int *fd, char type)
{
    char buffer[64 * 1024];
    ssize_t n = read(*fd, buffer, sizeof buffer);
    if (n > 0) {
        send_frame(type, buffer, (uint32_t)n);
    } else if (n == 0 || errno != EINTR) {
        close(*fd);
        *fd = -1;
    }
}

static void run(char *payload, uint32_t length)
{
    struct request r;
    struct cursor c = { payload, payload + length, 0 };
    take(&c, &r.cpu, 4);
    take(&c, &r.address_space, 8);
    take(&c, &r.processes, 8);
    take(&c, &r.file_size, 8);
    take(&c, &r.tmp_bytes, 8);
    take(&c, &r.shm_bytes, 8);
    r.argv = take_strings(&c);
    r.envp = take_strings(&c);
    if (c.broken || r.argv == NULL || r.argv[0] == NULL || r.envp == NULL) {
        const char text[] = "malformed run request";
        send_frame('F', text, sizeof text - 1);
        return;
    }

    int out[2], err[2], errors[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 || pipe2(errors, O_CLOEXEC) != 0)
        die("pipe");
    r.error_pipe = errors[1];

    static char *stack;
    if (stack == NULL && (stack = malloc(CHILD_STACK)) == NULL)
        die("malloc");
    /* The child's stdout and stderr are its pipes; clone copies this process's table, so dup them in first. */
    int saved_out = fcntl(1, F_DUPFD_CLOEXEC, 3), saved_err = fcntl(2, F_DUPFD_CLOEXEC, 3);
    if (saved_out < 0 || saved_err < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
        die("dup");
    pid_t child = clone(command_main, stack + CHILD_STACK, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | SIGCHLD, &r);
    int cloned = errno;
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    close(out[1]);
    close(err[1]);
    close(errors[1]);
    if (child < 0) {
        close(out[0]);
        close(err[0]);
        close(errors[0]);
        errno = cloned;
        char text[128];
        int n = snprintf(text, sizeof text, "clone: %s", strerror(errno));
        send_frame('F', text, (uint32_t)n);
        return;
    }

    /* The error pipe closes on exec (or carries why setup failed): nothing ran if it has text. */
    char failure[256];
    ssize_t failed = read(errors[0], failure, sizeof failure);
    close(errors[0]);
    if (failed > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        close(out[0]);
        close(err[0]);
        send_frame('F', failure, (uint32_t)failed);
        return;
    }

    send_frame('A', "", 0);
    int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
    if (pidfd < 0)
        die("pidfd_open");
    int exited = 0;
    while (!exited || out[0] >= 0 || err[0] >= 0) {
        struct pollfd fds[4] = {
            { 0, POLLIN, 0 }, { out[0], POLLIN, 0 }, { err[0], POLLIN, 0 }, { exited ? -1 : pidfd, POLLIN, 0 },
        };
        if (poll(fds, 4, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        if (fds[0].revents) {
            char *frame = NULL;
            uint32_t size;
            char type = read_frame(&frame, &size);
            free(frame);
            /* 'K', or the server went away: the command's PID namespace dies with its pid 1. */
            kill(child, SIGKILL);
            if (type == 0) {
                waitpid(child, NULL, 0);
                _exit(0);
            }
        }
        if (fds[1].revents)
            forward(&out[0], 'O');
        if (fds[2].revents)
            forward(&err[0], 'E');
        /* Its pid 1 gone, the namespace is empty (the kernel reaped the rest first): no writer is left. */
        if (fds[3].revents)
            exited = 1;
    }
    close(pidfd);

    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    uint32_t raw = (uint32_t)status;
    send_frame('X', &raw, 4);
}

int main(void)
{
    /* A command runs as the same user: it must not be able to open this process's /proc entries (fds, memory). */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);

    for (;;) {
        char *payload = NULL;
        uint32_t length = 0;
        char type = read_frame(&payload, &length);
        if (type == 0)
            return 0;
        if (type == 'S' && length % sizeof(struct sock_filter) == 0 && length / sizeof(struct sock_filter) <= 4096) {
            seccomp_program.len = (unsigned short)(length / sizeof(struct sock_filter));
            seccomp_program.filter = (struct sock_filter *)payload;
            continue;
        }
        if (type == 'R')
            run(payload, length);
        free(payload);
        /* Orphans cannot reach this PID namespace (each command has its own), but reap anything all the same. */
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
    }
}
