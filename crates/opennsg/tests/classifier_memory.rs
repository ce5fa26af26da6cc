//! The classifier's reported memory is what it holds on the heap, measured by a counting
//! allocator: it used to count the bytes in use only, about half of what growth had allocated.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn memory_bytes_is_the_heap_the_classifier_holds() {
    for (profile, count) in [
        (classbench::Profile::Acl, 1_000),
        (classbench::Profile::Firewall, 5_000),
    ] {
        let rules = classbench::generate(profile, count, 7);
        let before = LIVE.load(Ordering::Relaxed);
        let classifier = opennsg::workload::classbench_classifier(&rules);
        let held = (LIVE.load(Ordering::Relaxed) - before) as usize;
        assert_eq!(classifier.memory_bytes(), held, "{profile:?} {count}");
        drop(classifier);
    }
}
