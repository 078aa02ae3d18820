/* loop.c -- the one event_base of a daemon, configured the same way for all. */
#include "core/loop.h"

#include <event2/event.h>

struct event_base *loop_base_new(void)
{
    struct event_config *cfg = event_config_new();
    if (cfg == NULL)
        return NULL;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}
