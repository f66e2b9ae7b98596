! Kind parameters shared by every cfsx kernel.
module cfsx_kinds
   use, intrinsic :: iso_fortran_env, only: real64, int8, int32, int64
   implicit none
   private
   public :: dp, i1, i4, i8
   integer, parameter :: dp = real64
   integer, parameter :: i1 = int8
   integer, parameter :: i4 = int32
   integer, parameter :: i8 = int64
end module cfsx_kinds
