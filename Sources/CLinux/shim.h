#include <errno.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

/* prctl and syscall are variadic, which Swift cannot call, and a BPF program is built from C
   macros: one wrapper per use. */

/* Makes madvise(MADV_HUGEPAGE) fail with EINVAL on the calling thread and in every process it
   starts from now on (a seccomp filter is kept across fork and exec); every other call is
   allowed as before.

   Why: qemu advises huge pages on all guest RAM. On a file mapping that advice makes each page
   fault read a whole 2 MiB folio, twice over, through the kernel's readahead code, even when the
   file's readahead is off and even when transparent huge pages are disabled for the process or
   the system. For a RAM file served lazily from a chunk store, that turns a 4 KiB fault into
   4 MiB of fetches. qemu ignores a failed madvise, so refusing the advice is all it takes.

   Only the calling thread gets the filter (no SECCOMP_FILTER_FLAG_TSYNC): call it on a thread
   that only starts the child and then ends. It also sets no_new_privs on that thread, which
   seccomp requires of an unprivileged caller. Returns 0, or -1 with errno set. */
static inline int thaw_refuse_huge_page_advice(void) {
    struct sock_filter program[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_madvise, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MADV_HUGEPAGE, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EINVAL & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog filter = { .len = sizeof(program) / sizeof(program[0]), .filter = program };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    return (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter);
}

#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* A descriptor that becomes readable when process `pid` ends (pidfd_open, Linux 5.3), so one
   poll can wait for a process and a socket at once. Returns -1 with errno set on failure. */
static inline int thaw_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Descriptor passing over a Unix socket (SCM_RIGHTS). The control-message layout is built with
   the CMSG_* macros, which Swift does not import: one wrapper to send, one to receive. A warm
   process sandbox gets each handler's standard input, output and error this way. */

/* Sends `length` bytes with `count` (at most 8) descriptors attached. Returns the bytes sent, or
   -1 with errno set. */
static inline ssize_t thaw_send_descriptors(int socket, const void *bytes, size_t length, const int *descriptors, int count) {
    if (count < 0 || count > 8) { errno = EINVAL; return -1; }
    union { char buffer[CMSG_SPACE(8 * sizeof(int))]; struct cmsghdr align; } control;
    memset(&control, 0, sizeof(control));
    struct iovec vector = { .iov_base = (void *)bytes, .iov_len = length };
    struct msghdr message = { .msg_iov = &vector, .msg_iovlen = 1 };
    if (count > 0) {
        message.msg_control = control.buffer;
        message.msg_controllen = CMSG_SPACE(count * sizeof(int));
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(count * sizeof(int));
        memcpy(CMSG_DATA(header), descriptors, count * sizeof(int));
    }
    ssize_t sent;
    do { sent = sendmsg(socket, &message, MSG_NOSIGNAL); } while (sent < 0 && errno == EINTR);
    return sent;
}

/* Receives one message of at most `capacity` bytes and up to `capacity_descriptors` (at most 8)
   descriptors, which arrive close-on-exec; `*received` is set to how many came. Returns the bytes
   received (0 at end of stream), or -1 with errno set. */
static inline ssize_t thaw_receive_descriptors(int socket, void *bytes, size_t capacity, int *descriptors,
                                               int capacity_descriptors, int *received) {
    union { char buffer[CMSG_SPACE(8 * sizeof(int))]; struct cmsghdr align; } control;
    struct iovec vector = { .iov_base = bytes, .iov_len = capacity };
    struct msghdr message = { .msg_iov = &vector, .msg_iovlen = 1, .msg_control = control.buffer,
                              .msg_controllen = sizeof(control.buffer) };
    *received = 0;
    ssize_t count;
    do { count = recvmsg(socket, &message, MSG_CMSG_CLOEXEC); } while (count < 0 && errno == EINTR);
    if (count < 0) return -1;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        int arrived = (int)((header->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *data = (int *)CMSG_DATA(header);
        for (int index = 0; index < arrived; index++) {
            if (*received < capacity_descriptors && *received < 8) {
                descriptors[(*received)++] = data[index];
            } else {
                close(data[index]);
            }
        }
    }
    return count;
}

#include <stdint.h>

/* Opens inode `inode` of the ext4 filesystem mounted where `mount_fd` points, by file handle
   (open_by_handle_at, which needs CAP_DAC_READ_SEARCH), without a path. The handle is ext4's own
   kind, FILEID_INO32_GEN (1): the inode number and a generation of 0, which ext4 takes as "any".
   struct file_handle ends in a flexible array, which Swift cannot build, and glibc declares it
   only under _GNU_SOURCE: its layout (two 32-bit fields, then the handle) is spelled out here.
   Returns the descriptor, or -1 with errno set. */
static inline int thaw_open_ext4_inode(int mount_fd, uint32_t inode, int flags) {
    struct { uint32_t handle_bytes; int32_t handle_type; uint32_t fields[2]; } handle = { 8, 1, { inode, 0 } };
    return (int)syscall(SYS_open_by_handle_at, mount_fd, &handle, flags);
}
