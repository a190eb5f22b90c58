/* snapfs: a C FUSE server that serves a snapshot of a /proc tree from memory.
 *
 * The tools' floor: a tool run over this server (bound over /proc) makes the
 * FUSE requests it makes over the procsim mount, for the same bytes, but each
 * is answered by a lookup in memory, in C, on libfuse's low-level API. The
 * tool's time over snapfs, against the same tool over the mount, in the same
 * run, is what FUSE itself costs that tool on this machine; the rest is
 * procsim's. Options are those of the spec's FLOOR row and of the mount:
 * single-threaded, entry and attribute timeouts 1 s, direct_io, READDIRPLUS,
 * default_permissions, use of the snapshot's inode numbers. A name the
 * snapshot lacks is cached as absent for 1 s (the best a server can do).
 *
 * Snapshot format (written by bench/snapshot.py), little endian: the magic
 * "SNAPFS1\n", a u32 record count, then per record the header below, the
 * name, the data (file contents or link target) and the xattr value. Record
 * 0 is the root; a record's parent comes before it.
 *
 *   snapfs SNAPSHOT MOUNTPOINT      (foreground; unmount with umount)
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct rec {            /* as on disk */
    uint32_t mode, uid, gid, nlink;
    uint64_t ino, size;
    uint32_t parent, flags, name_len, data_len, xattr_len;
    int32_t err;        /* the errno of open() or readlink() when the capture got one */
};
#define HIDDEN 1        /* looked up but not listed: the target of an fd/ link */
#define SELF 2          /* "self": the caller's pid; "thread-self": PID/task/TID */
#define THREAD_SELF 4

struct node {
    struct rec r;
    const char *name, *data, *xattr;
    uint32_t first_child, next_sibling, last_child; /* 0: none (the root is nobody's child) */
};

static struct node *nodes;
static uint32_t nnodes, cap;
static uint32_t *htab;      /* open addressing over (parent, name): node index + 1, 0 empty */
static uint64_t hmask;
static const double TMO = 1.0;

static uint64_t hash(uint32_t parent, const char *name, size_t len) {
    uint64_t h = 1469598103934665603ULL ^ parent;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)name[i]) * 1099511628211ULL;
    return h;
}

static uint32_t find(uint32_t parent, const char *name) {
    size_t len = strlen(name);
    for (uint64_t h = hash(parent, name, len) & hmask;; h = (h + 1) & hmask) {
        uint32_t v = htab[h];
        if (!v) return 0;
        struct node *n = &nodes[v - 1];
        if (n->r.parent == parent && n->r.name_len == len && !memcmp(n->name, name, len))
            return v - 1;
    }
}

/* node i into its directory's list (unless hidden) and the name hash */
static void link_node(uint32_t i) {
    struct node *n = &nodes[i], *d = &nodes[n->r.parent];
    if (!(n->r.flags & HIDDEN)) {
        if (d->last_child) nodes[d->last_child].next_sibling = i; else d->first_child = i;
        d->last_child = i;
    }
    uint64_t h = hash(n->r.parent, n->name, n->r.name_len) & hmask;
    while (htab[h]) h = (h + 1) & hmask;
    htab[h] = i + 1;
}

static void load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(sz);
    if (!buf || fread(buf, 1, sz, f) != (size_t)sz) { fprintf(stderr, "cannot read %s\n", path); exit(2); }
    fclose(f);
    if (sz < 12 || memcmp(buf, "SNAPFS1\n", 8)) { fprintf(stderr, "%s: not a snapshot\n", path); exit(2); }
    uint32_t count;
    memcpy(&count, buf + 8, 4);
    cap = count + 65536;  /* room for readers' own directories (adopt) */
    nodes = calloc(cap, sizeof *nodes);
    for (hmask = 1; hmask < 4ULL * count + 1024; hmask <<= 1) ;
    htab = calloc(hmask, sizeof *htab);
    hmask -= 1;
    char *p = buf + 12;
    for (uint32_t i = 0; i < count; i++, nnodes++) {
        struct node *n = &nodes[i];
        memcpy(&n->r, p, sizeof n->r);
        p += sizeof n->r;
        n->name = strndup(p, n->r.name_len); p += n->r.name_len;  /* NUL-terminated for the dirent */
        n->data = S_ISLNK(n->r.mode) ? strndup(p, n->r.data_len) : p;  /* a link target: NUL-terminated */
        p += n->r.data_len;
        n->xattr = p; p += n->r.xattr_len;
        if (p > buf + sz) { fprintf(stderr, "%s: truncated\n", path); exit(2); }
        if (i) link_node(i);
    }
}

/* node ids: index + 1 (the root is FUSE_ROOT_ID, 1) */
static struct node *node_of(fuse_ino_t ino) { return ino >= 1 && ino <= nnodes ? &nodes[ino - 1] : NULL; }

static void fill_stat(const struct node *n, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_ino = n->r.ino;
    st->st_mode = n->r.mode;
    st->st_nlink = n->r.nlink;
    st->st_uid = n->r.uid;
    st->st_gid = n->r.gid;
    st->st_size = n->r.size;
}

static void fill_entry(uint32_t i, struct fuse_entry_param *e) {
    memset(e, 0, sizeof *e);
    e->ino = i + 1;
    e->attr_timeout = e->entry_timeout = TMO;
    fill_stat(&nodes[i], &e->attr);
}

static uint32_t add_node(uint32_t parent, const char *name, const struct stat *st, char *data, size_t len,
                         uint32_t flags) {
    if (nnodes == cap || 2ULL * (nnodes + 1) > hmask) return 0;  /* full: the reader gets ENOENT */
    struct node *n = &nodes[nnodes];
    memset(n, 0, sizeof *n);
    n->r.mode = st->st_mode; n->r.uid = st->st_uid; n->r.gid = st->st_gid; n->r.nlink = st->st_nlink;
    n->r.ino = st->st_ino; n->r.parent = parent; n->r.name_len = strlen(name); n->r.data_len = len;
    n->r.flags = flags;
    n->name = strdup(name);
    n->data = data;
    n->xattr = "";
    link_node(nnodes);
    return nnodes++;
}

/* The reader's own directory (ps and top look themselves up by pid): as
 * the mount's observer, the real /proc/PID's files, read once, here, and
 * the machine's mount table and net/ (init's: the snapshot's pid 1). */
static const char *OWN[] = { "cmdline", "comm", "environ", "io", "limits", "stat", "statm", "status", NULL };
static const char *INIT_FILES[] = { "mounts", "mountinfo", "mountstats", NULL };

/* a copy of node src (and below it) under parent; the bytes are shared */
static uint32_t copy_tree(uint32_t src, uint32_t parent) {
    struct node s = nodes[src];
    struct stat st;
    fill_stat(&s, &st);
    uint32_t i = add_node(parent, s.name, &st, (char *)s.data, s.r.data_len, s.r.flags);
    if (!i) return 0;
    for (uint32_t c = s.first_child; c; c = nodes[c].next_sibling) copy_tree(c, i);
    return i;
}

static uint32_t adopt(const char *name, pid_t caller) {
    char *e, path[64];
    long pid = strtol(name, &e, 10);
    struct stat st;
    if (*e || pid <= 0 || pid != caller) return 0;
    snprintf(path, sizeof path, "/proc/%ld", pid);
    if (lstat(path, &st)) return 0;
    uint32_t d = add_node(0, name, &st, "", 0, HIDDEN);  /* never listed, as the mount's observer */
    if (!d) return 0;
    for (const char **f = OWN; *f; f++) {
        snprintf(path, sizeof path, "/proc/%ld/%s", pid, *f);
        FILE *fp = fopen(path, "rb");
        if (!fp || fstat(fileno(fp), &st)) { if (fp) fclose(fp); continue; }
        char *buf = malloc(65536);
        size_t len = fread(buf, 1, 65536, fp);
        fclose(fp);
        add_node(d, *f, &st, buf, len, 0);
    }
    uint32_t init = find(0, "1");
    for (const char **f = INIT_FILES; init && *f; f++) {
        uint32_t src = find(init, *f);
        if (src) copy_tree(src, d);
    }
    uint32_t net = init ? find(init, "net") : 0;
    if (net) copy_tree(net, d);
    return d;
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    struct fuse_entry_param e;
    uint32_t i = node_of(parent) ? find(parent - 1, name) : 0;
    if (!i && parent == FUSE_ROOT_ID)
        i = adopt(name, fuse_req_ctx(req)->pid);
    if (!i) { memset(&e, 0, sizeof e); e.entry_timeout = TMO; fuse_reply_entry(req, &e); return; }
    fill_entry(i, &e);
    fuse_reply_entry(req, &e);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    struct node *n = node_of(ino);
    if (!n) { fuse_reply_err(req, ENOENT); return; }
    struct stat st;
    fill_stat(n, &st);
    fuse_reply_attr(req, &st, TMO);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
    struct node *n = node_of(ino);
    if (!n || !S_ISLNK(n->r.mode)) { fuse_reply_err(req, EINVAL); return; }
    if (n->r.err) { fuse_reply_err(req, n->r.err); return; }
    if (n->r.flags & (SELF | THREAD_SELF)) {
        char t[32];
        pid_t pid = fuse_req_ctx(req)->pid;  /* the calling thread; the tools here have one */
        if (n->r.flags & SELF) snprintf(t, sizeof t, "%d", pid);
        else snprintf(t, sizeof t, "%d/task/%d", pid, pid);
        fuse_reply_readlink(req, t);
        return;
    }
    fuse_reply_readlink(req, n->data);  /* NUL-terminated at load */
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    struct node *n = node_of(ino);
    if (!n) { fuse_reply_err(req, ENOENT); return; }
    if (n->r.err) { fuse_reply_err(req, n->r.err); return; }
    fi->direct_io = 1;
    fi->keep_cache = 0;
    fuse_reply_open(req, fi);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    struct node *n = node_of(ino);
    if (!n) { fuse_reply_err(req, EBADF); return; }
    size_t len = n->r.data_len;
    if ((size_t)off >= len) { fuse_reply_buf(req, NULL, 0); return; }
    fuse_reply_buf(req, n->data + off, size < len - off ? size : len - off);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { fuse_reply_err(req, 0); }

/* one directory entry into buf; 0 when it does not fit */
static int add_entry(fuse_req_t req, char *buf, size_t size, size_t *pos, const char *name, uint32_t i,
                     off_t next, int plus, int dot) {
    size_t l;
    if (plus) {
        struct fuse_entry_param e;
        fill_entry(i, &e);
        if (dot) memset(&e, 0, sizeof e), e.attr.st_ino = nodes[i].r.ino, e.attr.st_mode = S_IFDIR;
        l = fuse_add_direntry_plus(req, buf + *pos, size - *pos, name, &e, next);
    } else {
        struct stat st;
        fill_stat(&nodes[i], &st);
        l = fuse_add_direntry(req, buf + *pos, size - *pos, name, &st, next);
    }
    if (l > size - *pos) return 0;
    *pos += l;
    return 1;
}

/* ".", "..", then the children in the captured order; the entry at position
 * p has offset p + 1, the position of the next */
static void dir_reply(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus) {
    struct node *d = node_of(ino);
    if (!d || !S_ISDIR(d->r.mode)) { fuse_reply_err(req, ENOTDIR); return; }
    char *buf = malloc(size);
    size_t pos = 0;
    if (off <= 0 && !add_entry(req, buf, size, &pos, ".", ino - 1, 1, plus, 1)) goto done;
    if (off <= 1 && !add_entry(req, buf, size, &pos, "..", d->r.parent, 2, plus, 1)) goto done;
    off_t p = 2;
    for (uint32_t c = d->first_child; c; c = nodes[c].next_sibling, p++)
        if (p >= off && !add_entry(req, buf, size, &pos, nodes[c].name, c, p + 1, plus, 0)) break;
done:
    fuse_reply_buf(req, buf, pos);
    free(buf);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    dir_reply(req, ino, size, off, 0);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    dir_reply(req, ino, size, off, 1);
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
    struct node *n = node_of(ino);
    if (!n || !n->r.xattr_len || strcmp(name, "system.sockprotoname")) { fuse_reply_err(req, ENODATA); return; }
    if (size == 0) fuse_reply_xattr(req, n->r.xattr_len);
    else if (size < n->r.xattr_len) fuse_reply_err(req, ERANGE);
    else fuse_reply_buf(req, n->xattr, n->r.xattr_len);
}

static const struct fuse_lowlevel_ops ops = {
    .lookup = ll_lookup, .getattr = ll_getattr, .readlink = ll_readlink, .open = ll_open,
    .read = ll_read, .release = ll_release, .readdir = ll_readdir, .readdirplus = ll_readdirplus,
    .getxattr = ll_getxattr,
};

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s SNAPSHOT MOUNTPOINT\n", argv[0]); return 2; }
    load(argv[1]);
    char *fargv[] = { argv[0], "-o", "allow_other,default_permissions,fsname=snapfs,subtype=snapfs", NULL };
    struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
    if (!se) return 1;
    if (fuse_session_mount(se, argv[2])) return 1;
    fuse_set_signal_handlers(se);
    int r = fuse_session_loop(se);  /* single-threaded, as the mount's loop */
    fuse_remove_signal_handlers(se);
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    return r ? 1 : 0;
}
