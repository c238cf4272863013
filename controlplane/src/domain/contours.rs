//! Outer contours of a binary mask, as Label Studio's `BRUSH_TO_COCO` export traces brush
//! masks with OpenCV (`findContours` with `RETR_EXTERNAL` and `CHAIN_APPROX_SIMPLE`): the
//! border-following algorithm of Suzuki and Abe (1985), outer borders only, runs of steps in
//! one direction kept as their end points. Written from the paper's algorithm and checked
//! against OpenCV's output on generated masks (`e2e/sdk/test_export_formats.py`): the same
//! contours, in the same order, each starting at the same pixel and going the same way.
//!
//! Pure: a mask in, point lists out; memory is one byte per pixel of the mask plus its frame.

/// The eight neighbours, counterclockwise on screen (y grows downwards) from the right one:
/// right, up-right, up, up-left, left, down-left, down, down-right.
const STEPS: [(i64, i64); 8] = [
    (1, 0),
    (1, -1),
    (0, -1),
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, 1),
    (1, 1),
];

/// A pixel that is on a traced border and whose right neighbour is inside the region.
const BORDER: i8 = 2;
/// A pixel that is on a traced border with background right of it.
const BORDER_RIGHT: i8 = -2;

/// The outermost contours of the nonzero pixels of `mask` (`height` rows of `width` bytes):
/// borders of regions that no other region surrounds (holes and what lies inside them are left
/// out). Regions are 8-connected. Each contour is its corner points `(x, y)` in the order the
/// border is walked (down the left side first, counterclockwise on screen); a region of one
/// pixel is that one point. Contours come in OpenCV's order: the region met last in a
/// row-by-row scan first.
pub fn outer_contours(mask: &[u8], width: usize, height: usize) -> Vec<Vec<(i64, i64)>> {
    if width == 0 || height == 0 || mask.len() < width * height {
        return Vec::new();
    }
    // The mask inside a frame of background one pixel wide, as 0/1, with room for the marks.
    let w = width + 2;
    let mut img = vec![0i8; w * (height + 2)];
    for y in 0..height {
        for x in 0..width {
            if mask[y * width + x] != 0 {
                img[(y + 1) * w + x + 1] = 1;
            }
        }
    }
    let at = |x: i64, y: i64| (y as usize) * w + x as usize;
    let mut found: Vec<Vec<(i64, i64)>> = Vec::new();
    for y in 1..=height as i64 {
        // The last traced border pixel met on this row, left of the scan (none at first).
        let mut last_border: i8 = 0;
        let mut prev: i8 = 0;
        for x in 1..=width as i64 {
            let p = img[at(x, y)];
            if p != prev {
                // An outer border starts where a pixel not yet traced follows background, and
                // it is outermost unless the last border left of it has its region on its
                // right (the scan is then inside that region's hole).
                if prev == 0 && p == 1 && last_border <= 0 {
                    found.push(follow(&mut img, w, x, y));
                }
                let now = img[at(x, y)];
                if now != 0 && now != 1 {
                    last_border = now;
                }
                prev = now;
            }
        }
    }
    found.reverse();
    found
}

/// Follows the outer border that starts at `(x, y)` (framed coordinates), marking its pixels,
/// and returns its corner points in mask coordinates.
fn follow(img: &mut [i8], w: usize, x0: i64, y0: i64) -> Vec<(i64, i64)> {
    let at = |x: i64, y: i64| (y as usize) * w + x as usize;
    let start = (x0, y0);
    // Look clockwise around the start from its left neighbour for the first region pixel.
    let mut s = 4usize;
    let first = loop {
        s = (s + 7) % 8;
        let (dx, dy) = STEPS[s];
        if img[at(x0 + dx, y0 + dy)] != 0 {
            break Some((x0 + dx, y0 + dy));
        }
        if s == 4 {
            break None;
        }
    };
    let Some(first) = first else {
        // A lone pixel.
        img[at(x0, y0)] = BORDER_RIGHT;
        return vec![(x0 - 1, y0 - 1)];
    };
    let mut points = Vec::new();
    let mut prev_dir = (s + 4) % 8;
    let mut here = start;
    loop {
        // From the direction just after the one back to the previous pixel, look
        // counterclockwise for the next region pixel.
        let came = s;
        let mut next = here;
        let mut right_is_background = false;
        let mut dir = came;
        for k in 1..=8 {
            let d = (came + k) % 8;
            let (dx, dy) = STEPS[d];
            let v = img[at(here.0 + dx, here.1 + dy)];
            if v != 0 {
                dir = d;
                next = (here.0 + dx, here.1 + dy);
                break;
            }
            if d == 0 {
                right_is_background = true;
            }
        }
        let cell = &mut img[at(here.0, here.1)];
        if right_is_background {
            *cell = BORDER_RIGHT;
        } else if *cell == 1 {
            *cell = BORDER;
        }
        if dir != prev_dir {
            points.push((here.0 - 1, here.1 - 1));
            prev_dir = dir;
        }
        if next == start && here == first {
            break;
        }
        here = next;
        s = (dir + 4) % 8;
    }
    points
}

/// OpenCV's `boundingRect` of integer points: `[x, y, width, height]`, counting pixels (a
/// single point is 1 × 1); `[0, 0, 0, 0]` for none.
pub fn bounding_rect(points: &[(i64, i64)]) -> [i64; 4] {
    let Some(&(x, y)) = points.first() else {
        return [0; 4];
    };
    let (mut x1, mut y1, mut x2, mut y2) = (x, y, x, y);
    for &(x, y) in points {
        x1 = x1.min(x);
        y1 = y1.min(y);
        x2 = x2.max(x);
        y2 = y2.max(y);
    }
    [x1, y1, x2 - x1 + 1, y2 - y1 + 1]
}

/// OpenCV's `contourArea`: the polygon's area by the shoelace formula (0 under three points).
pub fn polygon_area(points: &[(i64, i64)]) -> f64 {
    if points.len() < 3 {
        return 0.0;
    }
    let mut sum = 0.0;
    let mut prev = points[points.len() - 1];
    for &p in points {
        sum += prev.0 as f64 * p.1 as f64 - prev.1 as f64 * p.0 as f64;
        prev = p;
    }
    (sum * 0.5).abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> (Vec<u8>, usize, usize) {
        let h = rows.len();
        let w = rows[0].len();
        let bytes = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| u8::from(b != b'.')))
            .collect();
        (bytes, w, h)
    }

    #[test]
    fn a_full_mask_is_its_four_corners_walked_down_the_left_side_first() {
        let (m, w, h) = mask(&["#####", "#####", "#####", "#####"]);
        assert_eq!(
            outer_contours(&m, w, h),
            vec![vec![(0, 0), (0, 3), (4, 3), (4, 0)]]
        );
    }

    #[test]
    fn regions_come_last_found_first_and_a_lone_pixel_is_one_point() {
        let (m, w, h) = mask(&["......", ".#....", "....#.", "....#.", "..###.", "......"]);
        assert_eq!(
            outer_contours(&m, w, h),
            vec![vec![(4, 2), (4, 3), (3, 4), (2, 4), (4, 4)], vec![(1, 1)]]
        );
    }

    #[test]
    fn holes_and_what_is_inside_them_are_left_out() {
        let (m, w, h) = mask(&[
            "#######", "#.....#", "#..#..#", "#.....#", "#######", ".......", "..##...",
        ]);
        let found = outer_contours(&m, w, h);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0], vec![(2, 6), (3, 6)]);
        assert_eq!(found[1], vec![(0, 0), (0, 4), (6, 4), (6, 0)]);
    }

    #[test]
    fn diagonal_neighbours_are_one_region() {
        let (m, w, h) = mask(&["#..", ".#.", "..#"]);
        assert_eq!(outer_contours(&m, w, h), vec![vec![(0, 0), (2, 2)]]);
    }

    #[test]
    fn areas_and_boxes_follow_opencv() {
        let square = [(0, 0), (0, 3), (4, 3), (4, 0)];
        assert_eq!(polygon_area(&square), 12.0);
        assert_eq!(bounding_rect(&square), [0, 0, 5, 4]);
        assert_eq!(polygon_area(&[(1, 1)]), 0.0);
        assert_eq!(bounding_rect(&[(1, 1)]), [1, 1, 1, 1]);
        assert_eq!(bounding_rect(&[]), [0; 4]);
        let triangle = [(0, 0), (0, 4), (3, 0)];
        assert_eq!(polygon_area(&triangle), 6.0);
    }
}
