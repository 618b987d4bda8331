// libfuse3's high-level API at interface version 3.1. Its entry points are macros that pick a
// versioned symbol; Swift cannot call macros, so these inline wrappers do it.
#define FUSE_USE_VERSION 31
#include <fuse3/fuse.h>
#include <fuse3/fuse_lowlevel.h>

static inline struct fuse *thaw_fuse_new(struct fuse_args *args, const struct fuse_operations *op, void *private_data) {
    return fuse_new(args, op, sizeof(*op), private_data);
}

static inline int thaw_fuse_loop_mt(struct fuse *f, int clone_fd) {
    return fuse_loop_mt(f, clone_fd);
}


// Names a thread for `top -H` and debuggers; threads it starts inherit the name, so naming the
// thread that runs the loop names libfuse's workers too. glibc declares this only under
// _GNU_SOURCE, which the system modules Swift imports are not built with.
extern int pthread_setname_np(pthread_t thread, const char *name);

static inline int thaw_name_thread(pthread_t thread, const char *name) {
    return pthread_setname_np(thread, name);
}
