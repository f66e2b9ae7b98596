! Diffraction from a binary lattice as separable transforms (matrix products).
!
! Lot average: for each L x L lot at a given origin (periodic wrap),
!     F(h, k) = sum_{x,y} (s(x, y) - c) exp(2 pi i (h x + k y)),  I = |F|**2 / L**2,
! averaged over the lots. With a = s - c, F = E_h a E_k^T where E_h(h, x) =
! exp(2 pi i h x), so each lot costs two small real-by-complex matrix products
! instead of an M**2 L**2 direct sum.
!
! Periodic grid (every h a multiple of 1/P, P a power of two): the same F by
! cheaper means. Along y, the lot's occupied sites are summed from tables indexed
! by 4 occupancy bits at a time (a binary lattice needs no multiplications);
! along x, exp(2 pi i j x / P) is periodic in x, so rows are folded modulo P and
! transformed by a radix-2 FFT. Both steps run over all kept k at once.
!
! Cosine transform: I(h, k) = sum_{a,b} G(a, b) cos(2 pi (h d_a + k d_b)), the
! Warren-Cowley sum for weights G on a square window of displacements d.
!
! Status codes: 0 ok, 1 bad dimensions (lot larger than lattice, empty grid),
! 2 bad values (origin outside the lattice).
module cfsx_diffraction
   use cfsx_kinds, only: dp, i1, i4
   implicit none
   private
   public :: lot_intensity, lot_intensity_periodic, cosine_transform

   real(dp), parameter :: two_pi = 6.283185307179586476925286766559_dp

contains

   subroutine lot_intensity(n, lattice, concentration, lot_size, n_lots, origins, n_h, h_values, &
                            n_k, k_values, intensity, status)
      integer(i4), intent(in) :: n, lot_size, n_lots, n_h, n_k
      integer(i1), intent(in) :: lattice(0:n - 1, 0:n - 1)
      real(dp), intent(in) :: concentration
      integer(i4), intent(in) :: origins(2, n_lots)
      real(dp), intent(in) :: h_values(n_h), k_values(n_k)
      real(dp), intent(out) :: intensity(n_h, n_k)
      integer(i4), intent(out) :: status

      real(dp) :: cos_h(n_h, 0:lot_size - 1), sin_h(n_h, 0:lot_size - 1)
      real(dp) :: cos_k(0:lot_size - 1, n_k), sin_k(0:lot_size - 1, n_k)
      real(dp) :: lot(0:lot_size - 1, 0:lot_size - 1)
      real(dp) :: lot_cos(0:lot_size - 1, n_k), lot_sin(0:lot_size - 1, n_k)
      real(dp) :: cos_plus_sin_h(n_h, 0:lot_size - 1)
      real(dp) :: cos_term(n_h, n_k), sin_term(n_h, n_k), imag_part(n_h, n_k)
      integer(i4) :: m, x, y

      intensity = 0.0_dp
      status = 0
      status = lot_status(n, lot_size, n_lots, origins)
      if (status == 0 .and. (n_h < 1 .or. n_k < 1)) status = 1
      if (status /= 0) return
      do x = 0, lot_size - 1
         cos_h(:, x) = cos(two_pi*h_values*x)
         sin_h(:, x) = sin(two_pi*h_values*x)
         cos_k(x, :) = cos(two_pi*k_values*x)
         sin_k(x, :) = sin(two_pi*k_values*x)
      end do
      cos_plus_sin_h = cos_h + sin_h

      do m = 1, n_lots
         do y = 0, lot_size - 1
            do x = 0, lot_size - 1
               lot(x, y) = real(lattice(modulo(origins(1, m) + x, n), modulo(origins(2, m) + y, n)), dp) &
                           - concentration
            end do
         end do
         lot_cos = matmul(lot, cos_k)
         lot_sin = matmul(lot, sin_k)
         ! Complex product (C + iS)(P + iQ) with three real products (Gauss):
         ! real = CP - SQ, imag = (C + S)(P + Q) - CP - SQ.
         cos_term = matmul(cos_h, lot_cos)
         sin_term = matmul(sin_h, lot_sin)
         imag_part = matmul(cos_plus_sin_h, lot_cos + lot_sin) - cos_term - sin_term
         intensity = intensity + (cos_term - sin_term)**2 + imag_part**2
      end do
      intensity = intensity/(real(n_lots, dp)*real(lot_size, dp)**2)
   end subroutine lot_intensity

   subroutine lot_intensity_periodic(n, lattice, concentration, lot_size, n_lots, origins, period, &
                                     n_k, k_values, intensity, status)
      integer(i4), intent(in) :: n, lot_size, n_lots, period, n_k
      integer(i1), intent(in) :: lattice(0:n - 1, 0:n - 1)
      real(dp), intent(in) :: concentration
      integer(i4), intent(in) :: origins(2, n_lots)
      real(dp), intent(in) :: k_values(n_k)
      real(dp), intent(out) :: intensity(0:period - 1, n_k)
      integer(i4), intent(out) :: status

      integer(i4), parameter :: bits = 4, patterns = 2**bits
      integer(i4) :: n_chunks, m, x, y, chunk, pattern, bit, row, column, slot
      integer(i4) :: reversed(0:period - 1), last_mask
      ! code(row, column): the occupancy bits of sites column..column+3 (wrapped) of a row.
      integer(i4) :: code(0:n - 1, 0:n - 1)
      real(dp) :: weight, wave_re(n_k), wave_im(n_k)
      ! Sum of (s - c) exp(2 pi i k y) over one chunk of 4 sites, for every occupancy pattern.
      real(dp) :: table_re(n_k, 0:patterns - 1, 0:(lot_size - 1)/bits)
      real(dp) :: table_im(n_k, 0:patterns - 1, 0:(lot_size - 1)/bits)
      real(dp) :: folded_re(n_k, 0:period - 1), folded_im(n_k, 0:period - 1)
      real(dp) :: total(n_k, 0:period - 1)
      real(dp) :: twiddle_re(0:period - 1), twiddle_im(0:period - 1)

      intensity = 0.0_dp
      status = 0
      status = lot_status(n, lot_size, n_lots, origins)
      if (status == 0 .and. (n_k < 1 .or. period < 1 .or. iand(period, period - 1) /= 0)) status = 1
      if (status /= 0) return
      n_chunks = (lot_size - 1)/bits + 1
      table_re = 0.0_dp
      table_im = 0.0_dp
      do y = 0, lot_size - 1
         chunk = y/bits
         bit = y - chunk*bits
         wave_re = cos(two_pi*k_values*y)
         wave_im = sin(two_pi*k_values*y)
         do pattern = 0, patterns - 1
            ! Every site contributes -c; an occupied one also contributes 1.
            weight = merge(1.0_dp - concentration, -concentration, btest(pattern, bit))
            table_re(:, pattern, chunk) = table_re(:, pattern, chunk) + weight*wave_re
            table_im(:, pattern, chunk) = table_im(:, pattern, chunk) + weight*wave_im
         end do
      end do
      do x = 0, period - 1
         twiddle_re(x) = cos(two_pi*x/period)
         twiddle_im(x) = sin(two_pi*x/period)
         reversed(x) = bit_reversed(x, period)
      end do

      code = 0
      do bit = 0, bits - 1
         do column = 0, n - 1
            code(:, column) = ior(code(:, column), ishft(int(lattice(:, modulo(column + bit, n)), i4), bit))
         end do
      end do
      last_mask = 2**(lot_size - (n_chunks - 1)*bits) - 1

      total = 0.0_dp
      do m = 1, n_lots
         folded_re = 0.0_dp
         folded_im = 0.0_dp
         do x = 0, lot_size - 1
            row = modulo(origins(1, m) + x, n)
            slot = reversed(modulo(x, period))
            do chunk = 0, n_chunks - 1
               pattern = code(row, modulo(origins(2, m) + chunk*bits, n))
               if (chunk == n_chunks - 1) pattern = iand(pattern, last_mask)
               folded_re(:, slot) = folded_re(:, slot) + table_re(:, pattern, chunk)
               folded_im(:, slot) = folded_im(:, slot) + table_im(:, pattern, chunk)
            end do
         end do
         call fft_bit_reversed_input(n_k, period, folded_re, folded_im, twiddle_re, twiddle_im)
         total = total + folded_re**2 + folded_im**2
      end do
      intensity = transpose(total)/(real(n_lots, dp)*real(lot_size, dp)**2)
   end subroutine lot_intensity_periodic

   ! Status of a lot specification: 1 bad dimensions, 2 an origin outside the lattice, 0 ok.
   pure integer(i4) function lot_status(n, lot_size, n_lots, origins)
      integer(i4), intent(in) :: n, lot_size, n_lots
      integer(i4), intent(in) :: origins(2, n_lots)
      lot_status = 0
      if (n < 1 .or. lot_size < 1 .or. lot_size > n .or. n_lots < 1) then
         lot_status = 1
      else if (any(origins < 0 .or. origins >= n)) then
         lot_status = 2
      end if
   end function lot_status

   pure integer(i4) function bit_reversed(value, period)
      integer(i4), intent(in) :: value, period
      integer(i4) :: rest, width
      bit_reversed = 0
      rest = value
      width = period/2
      do while (width > 0)
         if (iand(rest, 1) == 1) bit_reversed = bit_reversed + width
         rest = ishft(rest, -1)
         width = width/2
      end do
   end function bit_reversed

   ! In-place radix-2 DIT transform sum_x z(x) exp(+2 pi i j x / P) of the columns
   ! z(:, x) given in bit-reversed order of x; output in natural order of j.
   subroutine fft_bit_reversed_input(n_k, period, z_re, z_im, twiddle_re, twiddle_im)
      integer(i4), intent(in) :: n_k, period
      real(dp), intent(inout) :: z_re(n_k, 0:period - 1), z_im(n_k, 0:period - 1)
      real(dp), intent(in) :: twiddle_re(0:period - 1), twiddle_im(0:period - 1)
      real(dp) :: w_re, w_im, v_re(n_k), v_im(n_k)
      integer(i4) :: span, half, start, t, top, bottom

      span = 2
      do while (span <= period)
         half = span/2
         do t = 0, half - 1
            w_re = twiddle_re(t*(period/span))
            w_im = twiddle_im(t*(period/span))
            do start = 0, period - 1, span
               top = start + t
               bottom = top + half
               v_re = w_re*z_re(:, bottom) - w_im*z_im(:, bottom)
               v_im = w_re*z_im(:, bottom) + w_im*z_re(:, bottom)
               z_re(:, bottom) = z_re(:, top) - v_re
               z_im(:, bottom) = z_im(:, top) - v_im
               z_re(:, top) = z_re(:, top) + v_re
               z_im(:, top) = z_im(:, top) + v_im
            end do
         end do
         span = 2*span
      end do
   end subroutine fft_bit_reversed_input

   subroutine cosine_transform(n_d, displacements, weights, n_h, h_values, n_k, k_values, intensity, status)
      integer(i4), intent(in) :: n_d, n_h, n_k
      integer(i4), intent(in) :: displacements(n_d)
      real(dp), intent(in) :: weights(n_d, n_d)
      real(dp), intent(in) :: h_values(n_h), k_values(n_k)
      real(dp), intent(out) :: intensity(n_h, n_k)
      integer(i4), intent(out) :: status
      real(dp) :: cos_h(n_h, n_d), sin_h(n_h, n_d), cos_k(n_d, n_k), sin_k(n_d, n_k)
      integer(i4) :: a

      intensity = 0.0_dp
      status = 0
      if (n_d < 1 .or. n_h < 1 .or. n_k < 1) then
         status = 1
         return
      end if
      do a = 1, n_d
         cos_h(:, a) = cos(two_pi*h_values*displacements(a))
         sin_h(:, a) = sin(two_pi*h_values*displacements(a))
         cos_k(a, :) = cos(two_pi*k_values*displacements(a))
         sin_k(a, :) = sin(two_pi*k_values*displacements(a))
      end do
      ! cos(p + q) = cos p cos q - sin p sin q
      intensity = matmul(cos_h, matmul(weights, cos_k)) - matmul(sin_h, matmul(weights, sin_k))
   end subroutine cosine_transform

end module cfsx_diffraction
