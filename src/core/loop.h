/* loop.h -- the one event_base of a daemon, configured the same way for all.
 *
 * EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST: libevent batches the epoll_ctl changes
 * of one loop iteration and drops those that cancel out. hiredis's adapter
 * adds a write event for every command and deletes it once the command is
 * written, and evhttp toggles read and write around every request, so most
 * of those system calls vanish. The flag's one caveat (two fds sharing one
 * open file, through dup) does not occur here: every fd is a socket of its own.
 */
#ifndef PLCACHE_LOOP_H
#define PLCACHE_LOOP_H

struct event_base;

/* A new event base (epoll with a changelist where libevent uses epoll).
 * NULL when libevent cannot make one. The caller owns it (event_base_free). */
struct event_base *loop_base_new(void);

#endif
