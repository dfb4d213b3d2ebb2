//! A global allocator that attributes heap blocks to the code under test,
//! so the harness can bound the memory a decoder call or a connection
//! holds without seeing its private fields.
//!
//! While a [`Scope`] is open on a thread, every block allocated on that
//! thread is *tracked*, and so is a tracked block's reallocation wherever it
//! happens; freeing removes a block wherever it happens. The harness opens a
//! scope around each call into tether and drops whatever tether hands back
//! (events, payloads) before measuring, so the tracked blocks still alive are
//! the ones the code under test keeps. Per thread, so parallel tests do not
//! see each other's blocks.
//!
//! Each binary that runs the harness installs it:
//! `#[global_allocator] static ALLOC: track::Tracking = track::Tracking;`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};

/// The allocator; see the module docs.
pub struct Tracking;

/// Live tracked blocks a thread can hold; more is reported as
/// [`overflowed`] (a connection holds a handful).
const SLOTS: usize = 1024;

struct Blocks {
    addr: [usize; SLOTS],
    size: [usize; SLOTS],
    len: usize,
    bytes: usize,
    overflow: bool,
}

impl Blocks {
    const fn new() -> Self {
        Blocks {
            addr: [0; SLOTS],
            size: [0; SLOTS],
            len: 0,
            bytes: 0,
            overflow: false,
        }
    }

    fn add(&mut self, addr: usize, size: usize) {
        if self.len == SLOTS {
            self.overflow = true;
            return;
        }
        self.addr[self.len] = addr;
        self.size[self.len] = size;
        self.len += 1;
        self.bytes += size;
    }

    /// Forgets `addr`; true if it was tracked.
    fn remove(&mut self, addr: usize) -> bool {
        let Some(i) = self.addr[..self.len].iter().position(|&a| a == addr) else {
            return false;
        };
        self.bytes -= self.size[i];
        self.len -= 1;
        self.addr[i] = self.addr[self.len];
        self.size[i] = self.size[self.len];
        true
    }
}

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static BLOCKS: RefCell<Blocks> = const { RefCell::new(Blocks::new()) };
}

fn inside() -> bool {
    INSIDE.try_with(Cell::get).unwrap_or(false)
}

fn note_alloc(ptr: *mut u8, size: usize, tracked: bool) {
    if ptr.is_null() {
        return;
    }
    if inside() {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }
    if tracked {
        let _ = BLOCKS.try_with(|b| {
            if let Ok(mut b) = b.try_borrow_mut() {
                b.add(ptr as usize, size);
            }
        });
    }
}

fn note_free(ptr: *mut u8) -> bool {
    BLOCKS
        .try_with(|b| match b.try_borrow_mut() {
            Ok(mut b) if b.len > 0 => b.remove(ptr as usize),
            _ => false,
        })
        .unwrap_or(false)
}

// SAFETY: every method forwards to the system allocator unchanged; the
// bookkeeping around it never allocates and never unwinds.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let ptr = unsafe { System.alloc(layout) };
        note_alloc(ptr, layout.size(), inside());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        note_alloc(ptr, layout.size(), inside());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(ptr);
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let tracked = note_free(ptr);
        // SAFETY: forwarded unchanged.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if new.is_null() {
            // The old block is still live.
            note_alloc(ptr, layout.size(), tracked);
        } else {
            note_alloc(new, new_size, tracked || inside());
        }
        new
    }
}

/// While alive, allocations on this thread are tracked. See [`enter`].
pub struct Scope {
    was: bool,
}

impl Drop for Scope {
    fn drop(&mut self) {
        INSIDE.with(|i| i.set(self.was));
    }
}

/// Opens a tracking scope on this thread.
pub fn enter() -> Scope {
    Scope {
        was: INSIDE.with(|i| i.replace(true)),
    }
}

/// Bytes in tracked blocks still alive on this thread.
pub fn live_bytes() -> usize {
    BLOCKS.with(|b| b.borrow().bytes)
}

/// Whether more tracked blocks were alive at once than the table holds.
pub fn overflowed() -> bool {
    BLOCKS.with(|b| b.borrow().overflow)
}

/// The largest single allocation made inside a scope since the last call.
pub fn take_largest() -> usize {
    LARGEST.with(|l| l.replace(0))
}

/// Forgets every tracked block (the start of a run).
pub fn reset() {
    BLOCKS.with(|b| *b.borrow_mut() = Blocks::new());
    take_largest();
}

/// Whether [`Tracking`] is this binary's global allocator.
pub fn installed() -> bool {
    let before = live_bytes();
    let probe = {
        let _scope = enter();
        std::hint::black_box(Box::new([0u8; 16]))
    };
    let seen = live_bytes() > before;
    drop(probe);
    seen
}
