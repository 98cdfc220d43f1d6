//! Who is asking, and the injected clock and id source: the kernel's types, re-exported so
//! the record service's callers find them beside it.

pub use medmesh_kernel::{
    Clock, IdSource, MonotonicClock, OperationId, RequestContext, SystemClock, UuidIds,
};
